"""The secret-shared gallery: enrol people without retraining, 1:N identification and 1:1 verification
by Euclidean distance under MPC (see service.py for what each party learns)."""
from .protocols import REVEAL_MODES
from .service import Gallery, Identification, encode_vectors, pair_distances
from .store import GalleryError, GalleryRecord, read_record

__all__ = ["Gallery", "GalleryError", "GalleryRecord", "Identification", "REVEAL_MODES", "encode_vectors",
           "pair_distances", "read_record"]
