"""Two-server additive secret sharing over Z_2^64 with a dealer (see README, "The MPC engine")."""
from .channel import Channel, InProcessNetwork, PartyStats
from .errors import MPCError, ProtocolAborted, RangeError, SessionMismatch
from .fixedpoint import FixedPoint
from .party import Client, Server
from .session import LocalSession, ProcessSession, Session, open_session
from .tensor import SharedTensor, concatenate, multiply_many, square_many, stack

__all__ = [
    "Channel", "InProcessNetwork", "PartyStats", "MPCError", "ProtocolAborted", "RangeError",
    "SessionMismatch", "FixedPoint", "Client", "Server", "LocalSession", "ProcessSession", "Session",
    "open_session", "SharedTensor", "concatenate",
    "multiply_many", "square_many", "stack",
]
