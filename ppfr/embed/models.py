"""Where dlib's model files live, and one loaded copy of each per process.

The models ship in the `face_recognition_models` wheel. We only ask importlib where that package
is: importing it would import `pkg_resources`, which is slow and deprecated.
"""
from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

RESNET = "dlib_face_recognition_resnet_model_v1.dat"
LANDMARKS_5 = "shape_predictor_5_face_landmarks.dat"
LANDMARKS_68 = "shape_predictor_68_face_landmarks.dat"
CNN_DETECTOR = "mmod_human_face_detector.dat"


class ModelFilesMissing(RuntimeError):
    pass


def models_dir() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModelFilesMissing(
            "the dlib model files are missing: pip install face_recognition_models")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def model_path(filename: str) -> Path:
    path = models_dir() / filename
    if not path.is_file():
        raise ModelFilesMissing(f"dlib model file {path} is missing: reinstall face_recognition_models")
    return path


# Each loader is cached, so a process (the main one or a pool worker) reads each file once.

@lru_cache(maxsize=None)
def hog_detector():
    import dlib
    return dlib.get_frontal_face_detector()


@lru_cache(maxsize=None)
def cnn_detector():
    import dlib
    return dlib.cnn_face_detection_model_v1(str(model_path(CNN_DETECTOR)))


@lru_cache(maxsize=None)
def shape_predictor(points: int = 5):
    import dlib
    if points not in (5, 68):
        raise ValueError(f"dlib ships 5- and 68-point landmark models, not {points}")
    return dlib.shape_predictor(str(model_path(LANDMARKS_5 if points == 5 else LANDMARKS_68)))


@lru_cache(maxsize=None)
def resnet():
    import dlib
    return dlib.face_recognition_model_v1(str(model_path(RESNET)))
