"""The wire format of every link: frames of plain data with raw array bytes, never pickle.

A frame is a 20-byte header, a structure, and a payload:

    offset size  field
    0      4     magic b"PPFR"
    4      1     version (1)
    5      1     kind: 1 message, 2 closing (the structure is the reason, a string), 3 heartbeat (empty),
                 4 hello, 5 control (both: a plain-data structure, for the services' own conversation)
    6      2     reserved, 0
    8      4     structure length S (little-endian, as every integer here)
    12     8     payload length P
    20     S     structure: the message, encoded as below
    20+S   P     payload: the bytes of every array of the message, in order, each starting at a multiple
                 of 8 within the payload (zero padding between)

The receiver checks magic, version, kind and S + P <= its maximum message size before it allocates
anything, and every length inside the structure against what is left, so garbage or an oversize frame
is refused with a one-line `WireError` instead of an allocation or a traceback.

Structure: one tag byte per value, then its body.

    N / T / F   None / True / False
    i           int, 8 bytes signed          I  int beyond 64 bits: u16 length, signed bytes
    f           float, 8 bytes IEEE 754
    s           str: u32 length, UTF-8       b  bytes: u32 length, the bytes
    t / l       tuple / list: u32 count, the items
    d           dict: u32 count, then key, value for each
    a           array: u8 dtype code, u8 ndim, ndim x u64 dimensions; its bytes are the next block of
                the payload (C order, little-endian)
    g           numpy scalar: u8 dtype code, its bytes
    c           a registered dataclass (`register`): its name (an s value), then its fields (a d value)

dtype codes index DTYPES (bool, signed and unsigned integers of 8-64 bits, float32, float64). Nesting is
limited to MAX_DEPTH. Decoding builds only these values: a peer can make this process allocate at most
its maximum message size, and run no code but the constructors of dataclasses registered by ppfr itself.
"""
from __future__ import annotations

import dataclasses
import struct

import numpy as np

MAGIC = b"PPFR"
VERSION = 1
MESSAGE, CLOSING, HEARTBEAT, HELLO, CONTROL = 1, 2, 3, 4, 5
KINDS = {MESSAGE: "message", CLOSING: "closing", HEARTBEAT: "heartbeat", HELLO: "hello", CONTROL: "control"}
HEADER = struct.Struct("<4sBBHIQ")
DEFAULT_MAX_MESSAGE = 1 << 30  # 1 GiB: a gallery of a million 128-d shares is 1 GB
MAX_DEPTH = 32
ALIGN = 8

DTYPES = tuple(np.dtype(t).newbyteorder("<") for t in (
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float32", "float64"))
_DTYPE_CODE = {d: i for i, d in enumerate(DTYPES)}
_CODE_BY_NUM = {d.num: i for i, d in enumerate(DTYPES)}  # the fast path: a native dtype's number
_LITTLE = np.little_endian
_U8, _U16, _U32, _U64, _I64, _F64 = (struct.Struct(f) for f in ("<B", "<H", "<I", "<Q", "<q", "<d"))
_REGISTERED: dict[str, type] = {}


class WireError(ValueError):
    """Bytes that are not a valid ppfr frame, or a message that cannot be put into one."""


def register(cls):
    """Allow a dataclass (of plain-data fields) on the wire, by its qualified name: a class decorator."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"only dataclasses can be registered, not {cls!r}")
    _REGISTERED[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return cls


# -- encoding -------------------------------------------------------------------------------------------
class _Encoder:
    def __init__(self):
        self.out = bytearray()
        self.arrays: list[np.ndarray] = []
        self.payload = 0

    def value(self, v, depth=0):  # noqa: C901 - one branch per type of the format
        if depth > MAX_DEPTH:
            raise WireError(f"a message may nest at most {MAX_DEPTH} levels")
        out = self.out
        t = type(v)
        if t is np.ndarray:
            self.array(v)
        elif v is None:
            out += b"N"
        elif t is bool:
            out += b"T" if v else b"F"
        elif t is int:
            if -(1 << 63) <= v < (1 << 63):
                out += b"i" + _I64.pack(v)
            else:
                raw = v.to_bytes((v.bit_length() + 8) // 8, "little", signed=True)
                out += b"I" + _U16.pack(len(raw)) + raw
        elif t is float:
            out += b"f" + _F64.pack(v)
        elif t is str:
            raw = v.encode()
            out += b"s" + _U32.pack(len(raw)) + raw
        elif t in (bytes, bytearray, memoryview):
            raw = bytes(v)
            out += b"b" + _U32.pack(len(raw)) + raw
        elif t in (tuple, list):
            out += (b"t" if t is tuple else b"l") + _U32.pack(len(v))
            for item in v:
                self.value(item, depth + 1)
        elif t is dict:
            out += b"d" + _U32.pack(len(v))
            for k, item in v.items():
                self.value(k, depth + 1)
                self.value(item, depth + 1)
        elif isinstance(v, np.generic):
            code = self.dtype_code(v.dtype)
            out += b"g" + _U8.pack(code) + np.asarray(v, DTYPES[code]).tobytes()
        elif f"{t.__module__}.{t.__qualname__}" in _REGISTERED and dataclasses.is_dataclass(v):
            out += b"c"
            self.value(f"{t.__module__}.{t.__qualname__}", depth + 1)
            self.value({f.name: getattr(v, f.name) for f in dataclasses.fields(v)}, depth + 1)
        else:
            raise WireError(f"a {t.__module__}.{t.__qualname__} cannot be sent: messages are plain data")

    @staticmethod
    def dtype_code(dtype) -> int:
        code = _CODE_BY_NUM.get(dtype.num) if dtype.byteorder in "=|<" and _LITTLE else None
        if code is None:
            code = _DTYPE_CODE.get(np.dtype(dtype).newbyteorder("<"))
        if code is None:
            raise WireError(f"arrays of {dtype} cannot be sent")
        return code

    def array(self, a: np.ndarray):
        code = self.dtype_code(a.dtype)
        if a.ndim > 255:
            raise WireError("an array may have at most 255 dimensions")
        if a.dtype != DTYPES[code] or not a.flags.c_contiguous:
            a = np.ascontiguousarray(a, DTYPES[code])
        self.out += struct.pack(f"<cBB{a.ndim}Q", b"a", code, a.ndim, *a.shape)
        self.payload += -self.payload % ALIGN + a.nbytes
        self.arrays.append(a)


def encode(message, kind: int = MESSAGE) -> list:
    """The frame of a message as a list of buffers to write in order (header and structure, then for
    each array its padding and its memory, not copied)."""
    if kind not in KINDS:
        raise WireError(f"unknown frame kind {kind}")
    enc = _Encoder()
    enc.value(message)
    parts = [HEADER.pack(MAGIC, VERSION, kind, 0, len(enc.out), enc.payload) + enc.out]
    offset = 0
    for a in enc.arrays:
        pad = -offset % ALIGN
        if pad:
            parts.append(bytes(pad))
        parts.append(memoryview(a).cast("B") if a.nbytes else b"")
        offset += pad + a.nbytes
    return parts


# -- decoding -------------------------------------------------------------------------------------------
def parse_header(header: bytes, max_message: int = DEFAULT_MAX_MESSAGE) -> tuple[int, int, int]:
    """(kind, structure length, payload length) of a frame header, or WireError."""
    if len(header) != HEADER.size:
        raise WireError(f"a frame header has {HEADER.size} bytes, got {len(header)}")
    magic, version, kind, reserved, s, p = HEADER.unpack(header)
    if magic != MAGIC:
        raise WireError(f"not a ppfr frame (starts with {bytes(magic)!r})")
    if version != VERSION:
        raise WireError(f"frame version {version}, this side speaks {VERSION}")
    if kind not in KINDS or reserved:
        raise WireError(f"unknown frame kind {kind} (reserved {reserved})")
    if s + p > max_message:
        raise WireError(f"a frame of {s + p:,} bytes exceeds the maximum message size of {max_message:,}")
    return kind, s, p


class _Decoder:
    def __init__(self, structure, payload):
        self.buf = bytes(structure)
        self.pos = 0
        self.payload = payload
        self.offset = 0

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.buf):
            raise WireError("the frame's structure ends early")
        chunk = self.buf[self.pos:end]
        self.pos = end
        return chunk

    def unpack(self, fmt: struct.Struct):
        pos = self.pos
        if pos + fmt.size > len(self.buf):
            raise WireError("the frame's structure ends early")
        self.pos = pos + fmt.size
        return fmt.unpack_from(self.buf, pos)[0]

    def count(self) -> int:
        n = self.unpack(_U32)
        if n > len(self.buf) - self.pos:  # every item takes at least a byte: refuse before allocating
            raise WireError(f"a container of {n:,} items in {len(self.buf) - self.pos:,} bytes")
        return n

    def value(self, depth=0):  # noqa: C901 - one branch per tag of the format
        if depth > MAX_DEPTH:
            raise WireError(f"the frame nests deeper than {MAX_DEPTH} levels")
        if self.pos >= len(self.buf):
            raise WireError("the frame's structure ends early")
        tag = self.buf[self.pos]
        self.pos += 1
        if tag == 97:  # a
            return self.array()
        if tag == 116 or tag == 108:  # t, l
            items = [self.value(depth + 1) for _ in range(self.count())]
            return tuple(items) if tag == 116 else items
        if tag == 105:  # i
            return self.unpack(_I64)
        if tag == 115:  # s
            try:
                return str(self.take(self.unpack(_U32)), "utf-8")
            except UnicodeDecodeError:
                raise WireError("a string of the frame is not UTF-8") from None
        if tag == 78:  # N
            return None
        if tag == 84 or tag == 70:  # T, F
            return tag == 84
        if tag == 102:  # f
            return self.unpack(_F64)
        if tag == 98:  # b
            return self.take(self.unpack(_U32))
        if tag == 100:  # d
            return self.dict(depth)
        if tag == 73:  # I
            return int.from_bytes(self.take(self.unpack(_U16)), "little", signed=True)
        if tag == 103:  # g
            dtype = self.dtype()
            return np.frombuffer(self.take(dtype.itemsize), dtype)[0]
        if tag == 99:  # c
            return self.dataclass(depth)
        raise WireError(f"unknown tag {bytes([tag])!r} in the frame's structure")

    def dict(self, depth):
        out = {}
        for _ in range(self.count()):
            key = self.value(depth + 1)
            try:
                out[key] = self.value(depth + 1)
            except TypeError:
                raise WireError(f"a dict key of the frame is a {type(key).__name__}") from None
        return out

    def dtype(self) -> np.dtype:
        code = self.unpack(_U8)
        if code >= len(DTYPES):
            raise WireError(f"unknown dtype code {code}")
        return DTYPES[code]

    def array(self) -> np.ndarray:
        dtype = self.dtype()
        ndim = self.unpack(_U8)
        if self.pos + 8 * ndim > len(self.buf):
            raise WireError("the frame's structure ends early")
        shape = struct.unpack_from(f"<{ndim}Q", self.buf, self.pos)
        self.pos += 8 * ndim
        count = 1
        for n in shape:
            count *= n
        start = self.offset + (-self.offset % ALIGN)
        end = start + count * dtype.itemsize
        if end > len(self.payload):
            raise WireError(f"an array of shape {shape} runs past the frame's payload")
        self.offset = end
        return np.frombuffer(self.payload, dtype, count, start).reshape(shape)

    def dataclass(self, depth):
        name = self.value(depth + 1)
        cls = _REGISTERED.get(name) if isinstance(name, str) else None
        if cls is None:
            raise WireError(f"{name!r} is not a type that may be sent")
        fields = self.value(depth + 1)
        if not isinstance(fields, dict):
            raise WireError(f"the fields of a {name} are not a dict")
        try:
            return cls(**fields)
        except TypeError as e:
            raise WireError(f"bad fields for a {name}: {e}") from None


def decode(structure, payload) -> object:
    """The message of a frame's structure and payload (a bytearray: received arrays are writable views
    of it). Raises WireError unless the structure is exactly one value and the payload exactly its arrays."""
    d = _Decoder(structure, payload)
    message = d.value()
    if d.pos != len(d.buf):
        raise WireError(f"{len(d.buf) - d.pos} bytes after the frame's message")
    if d.offset != len(payload):
        raise WireError(f"the frame's payload has {len(payload) - d.offset} bytes beyond its arrays")
    return message


def read_frame(read_exact, max_message: int = DEFAULT_MAX_MESSAGE):
    """(kind, message) of the next frame; read_exact(n) returns exactly n bytes (a bytearray) or raises."""
    kind, s, p = parse_header(bytes(read_exact(HEADER.size)), max_message)
    structure = read_exact(s) if s else b""
    payload = read_exact(p) if p else bytearray()
    return kind, decode(structure, payload)
