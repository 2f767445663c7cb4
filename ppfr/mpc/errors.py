"""Errors raised by the MPC engine."""


class MPCError(Exception):
    """Base class of every error the engine raises."""


class RangeError(MPCError, ValueError):
    """A value is NaN, infinite, or outside the fixed-point range."""


class SessionMismatch(MPCError, ValueError):
    """Tensors or files from different sessions, models or parties were combined."""


class ProtocolAborted(MPCError, RuntimeError):
    """Another party failed, so this one stopped waiting for its messages."""
