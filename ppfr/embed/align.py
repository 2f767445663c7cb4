"""Face alignment.

dlib's ResNet aligns itself (`compute_face_descriptor` cuts a 150x150 chip from the 5 landmarks),
so only the OpenFace alignment lives here: nn4.small2 was trained on 96x96 faces warped so that
the outer eye corners and the nose tip land on fixed points of a mean face.
"""
from __future__ import annotations

import numpy as np

# dlib 68-point indices of OpenFace's OUTER_EYES_AND_NOSE: left eye outer corner, right eye outer
# corner, nose tip (landmarks 36, 45 and 33).
OUTER_EYES_AND_NOSE = (36, 45, 33)

# Where those three points go, as fractions of the output side. These are OpenFace's mean-face
# template (align_dlib.py, TEMPLATE) after its min-max normalisation to [0, 1], rows 36, 45, 33.
OPENFACE_TARGETS = np.array([
    [0.19415699, 0.16926690],
    [0.78885908, 0.15817115],
    [0.49495091, 0.51444132],
], dtype=np.float32)

OPENFACE_SIZE = 96


def landmarks_array(shape) -> np.ndarray:
    """A dlib full_object_detection as an (n, 2) float32 array of (x, y)."""
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)


def openface_affine(landmarks68: np.ndarray, size: int = OPENFACE_SIZE) -> np.ndarray:
    """The 2x3 affine map taking the outer eyes and nose tip onto OpenFace's template."""
    import cv2

    if landmarks68.shape != (68, 2):
        raise ValueError(f"OpenFace alignment needs 68 landmarks, got an array of shape {landmarks68.shape}")
    src = landmarks68[list(OUTER_EYES_AND_NOSE)].astype(np.float32)
    return cv2.getAffineTransform(src, OPENFACE_TARGETS * size)


def align_openface(rgb: np.ndarray, landmarks68: np.ndarray, size: int = OPENFACE_SIZE) -> np.ndarray:
    """Warp `rgb` to the size x size face that OpenFace nn4.small2 expects (uint8 RGB)."""
    import cv2

    return cv2.warpAffine(rgb, openface_affine(landmarks68, size), (size, size), flags=cv2.INTER_LINEAR)
