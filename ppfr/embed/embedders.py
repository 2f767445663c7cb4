"""Pluggable face embedders.

An embedder turns (RGB image, face box) into a fixed-length vector; it owns its alignment, since
each network was trained on its own kind of aligned face. Build one from a spec string with
`make_embedder`, so that pool workers can rebuild the same embedder from a picklable name:

    dlib                 dlib's ResNet on the 5-point alignment (default; dlib's recommended setup)
    dlib68               dlib's ResNet on the 68-point alignment (the landmarks it was trained with)
    openface:PATH        OpenFace nn4.small2 in torch, weights from PATH (see ppfr.embed.openface)
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from . import models
from .align import align_openface, landmarks_array
from .detect import Box


class EmbedderError(ValueError):
    """The embedder cannot be built: an unknown spec, torch missing, a bad weights file."""


class Embedder(ABC):
    name: str     # stored in the output file, so embeddings of different models are never mixed
    dim: int

    @staticmethod
    def name_for(*args) -> str:
        """The `name` an embedder built with these arguments has, without loading any model."""
        raise NotImplementedError

    @abstractmethod
    def embed(self, rgb: np.ndarray, box: Box) -> np.ndarray:
        """A float32 vector of length `dim` for the face in `box`."""


class DlibResNetEmbedder(Embedder):
    """dlib_face_recognition_resnet_model_v1: 128-d, same person when the distance is below 0.6."""

    dim = 128

    def __init__(self, landmark_points: int = 5, jitters: int = 0):
        self.landmark_points = landmark_points
        self.jitters = jitters
        self.name = self.name_for(landmark_points, jitters)

    @staticmethod
    def name_for(landmark_points: int = 5, jitters: int = 0) -> str:
        suffix = "" if landmark_points == 5 else f"-{landmark_points}pt"
        suffix += f"-jitter{jitters}" if jitters else ""
        return "dlib_resnet_v1" + suffix

    def embed(self, rgb, box):
        shape = models.shape_predictor(self.landmark_points)(rgb, box.to_dlib())
        # padding 0.25 is dlib's default and what the network was trained with
        vec = models.resnet().compute_face_descriptor(rgb, shape, self.jitters, 0.25)
        return np.asarray(vec, dtype=np.float32)


class OpenFaceEmbedder(Embedder):
    """OpenFace nn4.small2 (torch) on OpenFace's 96x96 outer-eyes-and-nose alignment."""

    dim = 128

    def __init__(self, weights_path):
        try:
            from .openface import WeightsError, load_nn4_small2
        except ImportError:
            raise EmbedderError("the openface embedder needs torch: pip install 'ppfr[openface]'") from None
        try:
            self.net = load_nn4_small2(weights_path)
        except WeightsError as e:
            raise EmbedderError(str(e)) from None
        self.name = self.name_for(weights_path)

    @staticmethod
    def name_for(weights_path=None) -> str:
        return "openface_nn4.small2"     # one network; the weights file is not part of the name

    def embed(self, rgb, box):
        import torch

        shape = models.shape_predictor(68)(rgb, box.to_dlib())
        face = align_openface(rgb, landmarks_array(shape))
        # OpenFace feeds RGB scaled to [0, 1], channels first
        x = torch.from_numpy(face).permute(2, 0, 1).float().div_(255).unsqueeze(0)
        with torch.no_grad():
            return self.net(x)[0].numpy().astype(np.float32)


def parse_spec(spec: str = "dlib") -> tuple[type[Embedder], tuple]:
    """The embedder class a spec string names and the arguments to build it with."""
    if spec == "dlib":
        return DlibResNetEmbedder, (5,)
    if spec == "dlib68":
        return DlibResNetEmbedder, (68,)
    if spec.startswith("openface:"):
        return OpenFaceEmbedder, (spec.split(":", 1)[1],)
    raise EmbedderError(f"unknown embedder {spec!r}: use dlib, dlib68 or openface:WEIGHTS.pt")


def embedder_name(spec: str = "dlib") -> str:
    """The name `make_embedder(spec).name` will have, without loading any model."""
    cls, args = parse_spec(spec)
    return cls.name_for(*args)


def make_embedder(spec: str = "dlib") -> Embedder:
    cls, args = parse_spec(spec)
    return cls(*args)
