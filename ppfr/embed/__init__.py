"""Client side: detect, align and embed faces (dlib's ResNet by default; OpenFace nn4.small2 optional).

    ppfr.embed.pipeline   embed_dataset, embed_files, embed_image, EmbedSettings
    ppfr.embed.store      EmbeddingSet, load_embeddings: the .npz that `ppfr embed` writes
    ppfr.embed.lfw        load_lfw_embeddings, read_pairs, pair_rows: the shared LFW cache
    ppfr.embed.detect     FaceDetector, choose_face, read_rgb, SkipImage
    ppfr.embed.embedders  Embedder, DlibResNetEmbedder, OpenFaceEmbedder, make_embedder
    ppfr.embed.align      align_openface (the 96x96 OpenFace warp)
    ppfr.embed.openface   NN4Small2, load_nn4_small2 (needs torch)
"""
from .store import EmbeddingSet, load_embeddings

__all__ = ["EmbeddingSet", "load_embeddings"]
