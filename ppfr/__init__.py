"""ppfr: privacy-preserving face recognition over two-server additive secret sharing."""

__version__ = "0.1.0"
