"""The one error of stored data."""
from __future__ import annotations

from ppfr.mpc.errors import MPCError


class StorageError(MPCError):
    """Stored data is missing, damaged, tampered with, inconsistent, or belongs to something else. The
    message is one line naming the file (or the party) and what to do."""
