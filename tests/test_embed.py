"""ppfr embed: real dlib on real LFW images, the dataset walk and its report, bad inputs."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from ppfr.embed.dataset import DatasetError, list_dataset
from ppfr.embed.detect import Box, FaceDetector, SkipImage, choose_face, read_rgb
from ppfr.embed.embedders import make_embedder
from ppfr.embed.pipeline import EmbedSettings, embed_dataset, embed_image
from ppfr.embed.store import EmbeddingSet

LFW = EmbedSettings(policy="center")   # what the LFW cache uses


@pytest.fixture(scope="module")
def dlib_embed():
    detector, embedder = FaceDetector("hog", 0, 1), make_embedder("dlib")

    def embed(path, policy="center"):
        return embed_image(read_rgb(path), detector, embedder, policy)[0]
    return embed


def side_by_side(a, b):
    """One image with two faces: two LFW photos next to each other."""
    import cv2
    return np.hstack([cv2.imread(str(a)), cv2.imread(str(b))])


# --- real LFW images ----------------------------------------------------------------------------

SAME = [(("George_W_Bush", 1), ("George_W_Bush", 2)), (("Colin_Powell", 1), ("Colin_Powell", 5)),
        (("Serena_Williams", 1), ("Serena_Williams", 3)), (("Tony_Blair", 1), ("Tony_Blair", 2))]
DIFFERENT = [(("George_W_Bush", 1), ("Colin_Powell", 1)), (("Tony_Blair", 1), ("Gerhard_Schroeder", 1)),
             (("Colin_Powell", 5), ("Donald_Rumsfeld", 1)), (("Serena_Williams", 1), ("Tony_Blair", 2))]


def test_same_person_closer_than_0_6_and_different_people_farther(lfw_image, dlib_embed):
    cache = {}

    def distance(a, b):
        for key in (a, b):
            if key not in cache:
                cache[key] = dlib_embed(lfw_image(*key))
        return float(np.linalg.norm(cache[a] - cache[b]))

    for a, b in SAME:
        assert distance(a, b) < 0.6, (a, b)
    for a, b in DIFFERENT:
        assert distance(a, b) > 0.6, (a, b)
    vec = cache[SAME[0][0]]
    assert vec.dtype == np.float32 and vec.shape == (128,)


def test_center_policy_picks_the_middle_face_and_single_rejects_two(lfw_image, tmp_path):
    import cv2
    # Bush small in the middle of a wide canvas, Powell larger at the left edge
    bush = cv2.imread(str(lfw_image("George_W_Bush", 1)))
    powell = cv2.resize(cv2.imread(str(lfw_image("Colin_Powell", 1))), (375, 375))
    canvas = np.zeros((375, 1000, 3), np.uint8)
    canvas[:, :375] = powell
    canvas[62:312, 500:750] = bush
    rgb = canvas[:, :, ::-1].copy()
    detector, embedder = FaceDetector("hog", 0, 1), make_embedder("dlib")
    boxes = detector.detect(rgb)
    assert len(boxes) == 2
    centre = choose_face(boxes, rgb.shape, "center")
    largest = choose_face(boxes, rgb.shape, "largest")
    assert centre.left > 500 and largest.right < 375
    with pytest.raises(SkipImage) as err:
        choose_face(boxes, rgb.shape, "single")
    assert err.value.reason == "multiple_faces"
    # and the centred face is Bush's
    bush_alone = embed_image(read_rgb(lfw_image("George_W_Bush", 1)), detector, embedder, "center")[0]
    assert np.linalg.norm(embedder.embed(rgb, centre) - bush_alone) < 0.3


def test_choose_face_rules_without_a_detector():
    small_centre, big_edge = Box(100, 100, 150, 150), Box(0, 0, 90, 90)
    assert choose_face([small_centre, big_edge], (250, 250, 3), "center") == small_centre
    assert choose_face([small_centre, big_edge], (250, 250, 3), "largest") == big_edge
    with pytest.raises(SkipImage) as err:
        choose_face([], (250, 250, 3), "largest")
    assert err.value.reason == "no_face"
    with pytest.raises(ValueError):
        choose_face([small_centre], (250, 250, 3), "nearest")


@pytest.fixture(scope="module")
def messy_dataset(tmp_path_factory, lfw_image):
    """Three LFW people plus every kind of bad file the walk must report."""
    import cv2
    root = tmp_path_factory.mktemp("dataset")
    for name, numbers in (("George_W_Bush", (1, 2)), ("Colin_Powell", (1,)), ("Tony_Blair", (1,))):
        (root / name).mkdir()
        for n in numbers:
            shutil.copy(lfw_image(name, n), root / name)
    good = lfw_image("Tony_Blair", 2).read_bytes()
    (root / "Tony_Blair" / "truncated.jpg").write_bytes(good[:300])          # corrupt JPEG
    (root / "Tony_Blair" / "text.png").write_text("not a picture")           # right extension, wrong content
    (root / "Tony_Blair" / "notes.txt").write_text("met him in 2003")        # not an image
    rng = np.random.default_rng(0)
    cv2.imwrite(str(root / "Colin_Powell" / "wall.png"),                     # an image with no face
                cv2.GaussianBlur(rng.integers(0, 255, (250, 250, 3), dtype=np.uint8), (31, 31), 0))
    cv2.imwrite(str(root / "Colin_Powell" / "two_faces.jpg"),                # two faces
                side_by_side(lfw_image("Colin_Powell", 2), lfw_image("Tony_Blair", 3)))
    (root / "stray.jpg").write_bytes(good)                                   # not in a person folder
    (root / "Empty_Person").mkdir()                                          # no images: no class
    (root / ".hidden").write_text("passed over")
    return root


def test_dataset_walk_reports_every_skipped_file_with_its_reason(messy_dataset):
    result, report = embed_dataset(messy_dataset, EmbedSettings(policy="single"), workers=2, progress=False)
    reasons = {s["path"]: s["reason"] for s in report["skipped"]}
    assert reasons == {
        "stray.jpg": "not_in_person_folder",
        "Tony_Blair/notes.txt": "not_an_image",
        "Tony_Blair/truncated.jpg": "unreadable",
        "Tony_Blair/text.png": "unreadable",
        "Colin_Powell/wall.png": "no_face",
        "Colin_Powell/two_faces.jpg": "multiple_faces",
    }
    assert all(s["detail"] for s in report["skipped"])
    assert report["skipped_by_reason"] == {"not_in_person_folder": 1, "not_an_image": 1, "unreadable": 2,
                                           "no_face": 1, "multiple_faces": 1}
    assert result.class_names == ["Colin_Powell", "George_W_Bush", "Tony_Blair"]
    assert sorted(result.paths) == ["Colin_Powell/Colin_Powell_0001.jpg", "George_W_Bush/George_W_Bush_0001.jpg",
                                    "George_W_Bush/George_W_Bush_0002.jpg", "Tony_Blair/Tony_Blair_0001.jpg"]
    for path, label in zip(result.paths, result.labels):
        assert result.class_names[label] == path.split("/")[0]
    assert report["embedded"] == 4 and report["images_found"] == 8   # .txt and stray.jpg never listed
    # with the 'largest' policy the two-face image counts, as the larger of the two faces
    result2, report2 = embed_dataset(messy_dataset, EmbedSettings(policy="largest"), workers=1, progress=False)
    assert "Colin_Powell/two_faces.jpg" in result2.paths
    np.testing.assert_allclose(result2.embeddings[result2.index()["George_W_Bush/George_W_Bush_0001.jpg"]],
                               result.embeddings[result.index()["George_W_Bush/George_W_Bush_0001.jpg"]],
                               atol=1e-5)


def test_cli_writes_npz_and_report_atomically_and_prints_json(messy_dataset, tmp_path):
    from ppfr.embed.cli import embed
    out = tmp_path / "emb.npz"
    res = CliRunner().invoke(embed, [str(messy_dataset), "-o", str(out), "--policy", "single",
                                     "--workers", "1", "--json", "--quiet"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["embedded"] == 4 and summary["skipped_count"] == 6
    assert summary["report"] == str(tmp_path / "emb.report.json")
    report = json.loads((tmp_path / "emb.report.json").read_text())
    assert {s["reason"] for s in report["skipped"]} >= {"unreadable", "no_face", "multiple_faces", "not_an_image"}
    with np.load(out, allow_pickle=False) as z:
        assert z["embeddings"].dtype == np.float32 and z["embeddings"].shape == (4, 128)
        assert z["labels"].dtype.kind == "i"
        assert str(z["embedder"]) == "dlib_resnet_v1"
        assert list(z["class_names"]) == ["Colin_Powell", "George_W_Bush", "Tony_Blair"]
        assert all(not p.startswith("/") for p in z["paths"])
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []   # no temp file left


def test_cli_errors_on_empty_missing_or_faceless_datasets(tmp_path):
    from ppfr.embed.cli import embed
    runner = CliRunner()
    (tmp_path / "empty").mkdir()
    res = runner.invoke(embed, [str(tmp_path / "empty"), "-o", str(tmp_path / "e.npz")])
    assert res.exit_code == 1 and "no images in" in res.output
    res = runner.invoke(embed, [str(tmp_path / "nowhere"), "-o", str(tmp_path / "e.npz")])
    assert res.exit_code == 1 and "does not exist" in res.output
    (tmp_path / "faceless" / "Nobody").mkdir(parents=True)
    (tmp_path / "faceless" / "Nobody" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    res = runner.invoke(embed, [str(tmp_path / "faceless"), "-o", str(tmp_path / "f.npz"), "--workers", "1"])
    assert res.exit_code == 1 and "no face embedded" in res.output
    assert not (tmp_path / "f.npz").exists()
    assert json.loads((tmp_path / "f.report.json").read_text())["skipped"][0]["reason"] == "unreadable"
    res = runner.invoke(embed, [str(tmp_path / "faceless"), "--embedder", "facenet"])
    assert res.exit_code == 2 and "unknown embedder" in res.output
    # a bad weights file is reported before the pool starts (a failing worker initializer would
    # otherwise be respawned forever)
    res = runner.invoke(embed, [str(tmp_path / "faceless"), "-o", str(tmp_path / "o.npz"),
                                "--embedder", f"openface:{tmp_path / 'absent.pt'}", "--workers", "2"])
    assert res.exit_code == 1 and "weights file" in res.output and "not found" in res.output


def test_read_rgb_and_walk_errors(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(SkipImage, match="empty file"):
        read_rgb(tmp_path / "empty.jpg")
    with pytest.raises(SkipImage) as err:
        read_rgb(tmp_path / "missing.jpg")
    assert err.value.reason == "unreadable"
    (tmp_path / "file").write_text("x")
    with pytest.raises(DatasetError, match="not a folder"):
        list_dataset(tmp_path / "file")


def test_retry_at_2x_finds_a_face_hog_misses_at_1x(lfw_image):
    # HOG finds no face in this one at the original size; the 2x retry does.
    rgb = read_rgb(lfw_image("Angela_Merkel", 3))
    assert FaceDetector("hog", 0, None).detect(rgb) == []
    assert len(FaceDetector("hog", 0, 1).detect(rgb)) >= 1


# --- the store and LFW helpers --------------------------------------------------------------------

def test_store_round_trip_and_min_images_subset(tmp_path):
    rng = np.random.default_rng(1)
    names = ["Ann", "Bob", "Cid"]
    labels = np.array([0, 0, 0, 1, 2, 2])
    es = EmbeddingSet(rng.normal(size=(6, 128)).astype(np.float32), labels, names,
                      [f"{names[l]}/{i}.jpg" for i, l in enumerate(labels)], "dlib_resnet_v1",
                      skipped=[("Bob/9.jpg", "no_face"), ("Bob/8.jpg", "unreadable")], settings={"policy": "center"})
    es.save(tmp_path / "e.npz")
    back = EmbeddingSet.load(tmp_path / "e.npz")
    np.testing.assert_array_equal(back.embeddings, es.embeddings)
    assert back.class_names == names and back.paths == es.paths and back.skipped == es.skipped
    assert back.settings == {"policy": "center"} and back.embedder == "dlib_resnet_v1"
    # Bob has 1 embedded + 2 skipped = 3 images, so he is in the >=3 subset; Cid (2) is not
    sub = back.select_min_images(3)
    assert sub.class_names == ["Ann", "Bob"] and sub.labels.tolist() == [0, 0, 0, 1]
    assert back.select_min_images(3, count_skipped=False).class_names == ["Ann"]
    assert back.select_min_images(2).labels.tolist() == [0, 0, 0, 1, 2, 2]


def test_lfw_pairs_file_parses_into_ten_balanced_folds(lfw_dir):
    from ppfr.embed.lfw import read_pairs
    pairs = read_pairs(lfw_dir)
    assert len(pairs) == 6000
    for fold in range(10):
        in_fold = [p for p in pairs if p.fold == fold]
        assert sum(p.same for p in in_fold) == 300 and len(in_fold) == 600
    assert pairs[0].path_a == "Abel_Pacheco/Abel_Pacheco_0001.jpg" and pairs[0].same
    images = lfw_dir / "images_deepfunneled"
    assert all((images / p.path_a).is_file() and (images / p.path_b).is_file() for p in pairs[::97])


# --- OpenFace: alignment, and the nn4.small2 network with a weights file written here -----------
# OpenFace's trained weights cannot be had on this machine, so these check the alignment on real
# faces, the architecture, and the loading of weights; not recognition accuracy.

def test_openface_alignment_puts_eyes_and_nose_on_the_template_and_undoes_rotation(lfw_image):
    import cv2
    from ppfr.embed import models
    from ppfr.embed.align import OPENFACE_TARGETS, OUTER_EYES_AND_NOSE, align_openface, landmarks_array, openface_affine

    def landmarks(rgb):
        box = choose_face(FaceDetector("hog", 0, 1).detect(rgb), rgb.shape, "center")
        return landmarks_array(models.shape_predictor(68)(rgb, box.to_dlib()))

    rgb = read_rgb(lfw_image("George_W_Bush", 1))
    marks = landmarks(rgb)
    warped = cv2.transform(marks[None, list(OUTER_EYES_AND_NOSE)], openface_affine(marks))[0]
    np.testing.assert_allclose(warped, OPENFACE_TARGETS * 96, atol=1e-3)
    chip = align_openface(rgb, marks)
    assert chip.shape == (96, 96, 3) and chip.dtype == np.uint8

    # The same face turned by 12 degrees must give nearly the same chip: landmarks are found
    # again on the rotated image, so this tests detection, landmarks and the warp together.
    turn = cv2.getRotationMatrix2D((125, 125), 12, 1.0)
    turned = cv2.warpAffine(rgb, turn, (250, 250), borderMode=cv2.BORDER_REFLECT)
    chip_turned = align_openface(turned, landmarks(turned))
    other = align_openface(read_rgb(lfw_image("Colin_Powell", 1)), landmarks(read_rgb(lfw_image("Colin_Powell", 1))))
    inner = (slice(20, 80), slice(15, 81))
    diff_same = np.abs(chip[inner].astype(int) - chip_turned[inner]).mean()
    diff_other = np.abs(chip[inner].astype(int) - other[inner]).mean()
    assert diff_same < 12 and diff_same < diff_other / 2, (diff_same, diff_other)
    with pytest.raises(ValueError, match="68 landmarks"):
        openface_affine(marks[:5])


def test_nn4_small2_architecture_shapes_and_size():
    torch = pytest.importorskip("torch")
    from ppfr.embed.openface import NN4Small2
    net = NN4Small2().eval()
    x = torch.rand(2, 3, 96, 96)
    shapes = {}
    for name, stage in net.stages():
        x = stage(x)
        shapes[name] = tuple(x.shape[1:])
    assert shapes == {"stem": (192, 12, 12), "inception_3a": (256, 12, 12), "inception_3b": (320, 12, 12),
                      "inception_3c": (640, 6, 6), "inception_4a": (640, 6, 6), "inception_4e": (1024, 3, 3),
                      "inception_5a": (736, 3, 3), "inception_5b": (736, 3, 3)}
    # OpenFace lists nn4.small2 at 3,733,968 parameters
    assert sum(p.numel() for p in net.parameters()) == 3_733_968
    out = net(torch.rand(3, 3, 96, 96))
    assert out.shape == (3, 128)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(3))
    with pytest.raises(ValueError, match="96, 96"):
        net(torch.rand(1, 3, 112, 112))


def test_nn4_small2_loads_a_weights_file_and_embeds_a_real_face(tmp_path, lfw_image):
    torch = pytest.importorskip("torch")
    from ppfr.embed.openface import NN4Small2, WeightsError, load_nn4_small2
    torch.manual_seed(0)
    trained = NN4Small2().eval()
    for m in trained.modules():          # non-default batch-norm statistics must survive the round trip
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    torch.save(trained.state_dict(), tmp_path / "nn4.small2.pt")
    loaded = load_nn4_small2(tmp_path / "nn4.small2.pt")
    x = torch.rand(2, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), trained(x))
        assert not torch.allclose(NN4Small2().eval()(x), trained(x))   # it did load something

    torch.save({"state_dict": trained.state_dict()}, tmp_path / "wrapped.pt")
    embedder = make_embedder(f"openface:{tmp_path / 'wrapped.pt'}")
    rgb = read_rgb(lfw_image("George_W_Bush", 1))
    vec = embed_image(rgb, FaceDetector("hog", 0, 1), embedder, "center")[0]
    assert embedder.name == "openface_nn4.small2" and vec.shape == (128,) and vec.dtype == np.float32
    assert abs(np.linalg.norm(vec) - 1) < 1e-5

    state = trained.state_dict()
    state.pop("linear.bias")
    state["linear.weight"] = torch.zeros(64, 736)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(WeightsError, match="missing linear.bias.*wrong shape for linear.weight"):
        load_nn4_small2(tmp_path / "bad.pt")
    (tmp_path / "junk.pt").write_bytes(b"not torch")
    with pytest.raises(WeightsError, match="not a PyTorch weights file"):
        load_nn4_small2(tmp_path / "junk.pt")
    with pytest.raises(WeightsError, match="not found"):
        load_nn4_small2(tmp_path / "absent.pt")


def test_lfw_cache_builds_once_selects_subsets_and_pairs(tmp_path, lfw_image):
    import os
    from ppfr.embed.lfw import cache_path, load_lfw_embeddings, pair_rows, read_pairs
    lfw = tmp_path / "lfw"
    for name, numbers in (("Colin_Powell", (1, 2, 3)), ("Tony_Blair", (1, 2)), ("Abel_Pacheco", (1,))):
        (lfw / "images_deepfunneled" / name).mkdir(parents=True)
        for n in numbers:
            (lfw / "images_deepfunneled" / name / f"{name}_{n:04d}.jpg").write_bytes(lfw_image(name, n).read_bytes())
    # one of Blair's images holds no face: it still counts toward min_images, as in LFW's own counts
    (lfw / "images_deepfunneled" / "Tony_Blair" / "Tony_Blair_0002.jpg").write_bytes(b"broken")
    (lfw / "pairs.txt").write_text("1\t1\nColin_Powell\t1\t2\nColin_Powell\t3\tTony_Blair\t2\n")
    cache = tmp_path / "cache"

    with pytest.raises(FileNotFoundError, match="no LFW embedding cache"):
        load_lfw_embeddings(lfw, cache_dir=cache, compute=False)
    lock = cache_path(cache).with_suffix(".running")
    lock.parent.mkdir()
    lock.write_text(f"{os.getpid()}\n")                         # a live builder: do not start a second
    with pytest.raises(RuntimeError, match="being computed"):
        load_lfw_embeddings(lfw, cache_dir=cache)
    lock.unlink()

    full = load_lfw_embeddings(lfw, cache_dir=cache, workers=1, progress=False)
    assert len(full) == 5 and full.skipped == [("Tony_Blair/Tony_Blair_0002.jpg", "unreadable")]
    assert cache_path(cache).exists() and not lock.exists()
    assert cache_path(cache).with_suffix(".report.json").exists()
    again = load_lfw_embeddings(lfw, cache_dir=cache, compute=False)   # from the cache, no recompute
    np.testing.assert_array_equal(again.embeddings, full.embeddings)

    two = load_lfw_embeddings(lfw, min_images=2, cache_dir=cache, compute=False)
    assert two.class_names == ["Colin_Powell", "Tony_Blair"] and two.labels.tolist() == [0, 0, 0, 1]

    pairs = read_pairs(lfw)
    a, b, same, fold = pair_rows(full, pairs)
    assert same.tolist() == [True, False] and fold.tolist() == [0, 0]
    assert full.paths[a[0]] == "Colin_Powell/Colin_Powell_0001.jpg" and b[1] == -1   # Blair 2 has no embedding
    assert np.linalg.norm(full.embeddings[a[0]] - full.embeddings[b[0]]) < 0.6
