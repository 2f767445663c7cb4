"""Function secret sharing for comparisons: the sign of a shared value in one online round.

A distributed comparison function (DCF; Boyle, Chandran, Gilboa, Gupta, Ishai, Kumar, Rathee 2021,
"Function Secret Sharing for Mixed-Mode and Fixed-Point Secure Computation", Fig. 1) splits
f(x) = beta [x < alpha] on L-bit inputs into two keys: Eval(k0, x) + Eval(k1, x) = f(x) for every x,
and either key alone is pseudorandom, so it says nothing about alpha or beta. Two output groups:
"add", Z_2^64 (additive shares of any beta), and "xor", Z_2 (XOR shares of a bit, half the hashing).

The sign test (sign_keygen / less_than_zero): the dealer draws a mask r and sends each server a share
of r and a DCF key for alpha = r mod 2^(w-1). Online the servers open c = x + r (one round, w/8 bytes
a value each way) and evaluate locally, since with c = c_h 2^(w-1) + c' and r = r_h 2^(w-1) + r',
    msb(x) = msb(c - r) = c_h XOR r_h XOR [c' < r']
(subtracting r' from c' borrows exactly when c' < r'). The dealer folds r_h in (for "add", beta =
1 - 2 r_h and a share of r_h make the keys output r_h XOR [c' < r'] as additive 0/1; for "xor", a share
of r_h); c_h is public. Exact for every x in the ring (w = 64), or for -2^31 <= x < 2^31 with w = 32,
where both shares are reduced modulo 2^32 first (local and exact) and the sign is bit 31 of x mod 2^32.

The PRG is fixed-key AES-128 in Matyas-Meyer-Oseas form, H(b) = AES_K(b) XOR b, on blocks b = seed XOR
tweak (the tweak in the high word: 0 and 1 the left and right child, 2 and 3 the left and right output
word of group "add", in the low word of that block), through the `cryptography` package on whole
buffers: one `update` per tree level for all values. A node's seed is its whole 128-bit block; its
lowest bit is also the node's control bit t (which the holder knows: 127 bits are secret from the
other). In group "xor" a child block's bit 1 is its output bit, cleared before the block seeds the
next level (126 secret bits).

Key size per value and server, L = w - 1 levels: a 16-byte seed; per level a 16-byte seed correction
(its bit 0 the left control-bit correction; in "xor" its bit 1 the output correction) and, in "add", an
8-byte output correction; one word packing the right control-bit corrections; the final correction,
the share of r and the share of r_h (8 bytes each): 16 + 24 L + 32 bytes in "add" (1,560 for w = 64,
792 for w = 32), 16 + 16 L + 32 in "xor" (1,056 and 544). The dealer hashes 4 ("add") or 2 ("xor") AES
blocks a level per server and value, a server online 2 or 1, with about a dozen whole-array numpy
operations a level; nothing is sent but c.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

U64 = np.uint64
ONE = U64(1)
# A public, fixed AES key: the PRG's security rests on the seeds being secret, not on the key.
FIXED_KEY = bytes.fromhex("5c1e9d7a3f08b2e46a91c7d05e3b8f27")
VALUE = 2  # the tweak of a node's output block (of group "add"); children 0 and 1, right-hand ones plus 1
WIDTHS = (32, 64)
CHUNK = 4096  # values walked through the tree together: their working set stays in cache across the levels


def _hasher():
    """An AES-128 encryptor for one call's worth of levels (a context is not to be shared by threads)."""
    return Cipher(algorithms.AES(FIXED_KEY), modes.ECB()).encryptor()


def _mmo(encryptor, blocks: np.ndarray, out: np.ndarray) -> np.ndarray:
    """H(b) = AES_K(b) XOR b for every 16-byte block of `blocks` (contiguous uint64, last axis of 2 words),
    in one call, into `out` (one block longer than blocks: update_into wants the room); returns its view."""
    encryptor.update_into(memoryview(blocks.reshape(-1)).cast("B"), memoryview(out).cast("B"))
    hashed = out[:blocks.size].reshape(blocks.shape)
    hashed ^= blocks
    return hashed


def _hash_buffer(blocks: np.ndarray) -> np.ndarray:
    return np.empty(blocks.size + 2, dtype=U64)


# -- the distributed comparison function ------------------------------------------------------------------
GROUPS = ("add", "xor")
BIT1 = U64(2)  # in group "xor", where a child block carries its output bit


@dataclass(frozen=True)
class DCFKey:
    """One server's key for n comparisons [x < alpha] on `bits`-bit inputs, all arrays uint64:
    seed (n, 2); seed_cw (bits, n, 2), bit 0 the left control-bit correction (in group "xor", bit 1 the
    output correction); value_cw (bits, n) the output corrections of group "add" ((0, n) in "xor");
    right_t (n,), bit `bits-1-i` = the XOR of the left and right control-bit corrections of level i (the
    bit of x that level reads), other bits random; final_cw (n,)."""
    seed: np.ndarray
    seed_cw: np.ndarray
    value_cw: np.ndarray
    right_t: np.ndarray
    final_cw: np.ndarray

    @property
    def bits(self) -> int:
        return self.seed_cw.shape[0]

    @property
    def group(self) -> str:
        return "xor" if self.value_cw.shape[0] == 0 else "add"

    def to_wire(self):
        return tuple(getattr(self, f.name) for f in fields(self))

    @classmethod
    def from_wire(cls, plain):
        return cls(*plain)

    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.to_wire())


def dcf_keygen(rng, alpha: np.ndarray, beta: np.ndarray, bits: int, group: str = "add") -> tuple[DCFKey, DCFKey]:
    """Keys for f_i(x) = beta_i [x < alpha_i], alpha_i < 2^bits, beta_i in Z_2^64 ("add") or in {0, 1}
    ("xor"; Boyle et al. 2021, Fig. 1), for all n values at once: both servers' trees are walked side
    by side along alpha, CHUNK values at a time, one AES call per level (4 or 2 blocks per server and
    value). Inputs are read from their most significant bit."""
    alpha = np.asarray(alpha, dtype=U64).ravel()
    beta = np.asarray(beta, dtype=U64).ravel()
    n = alpha.size
    if not 1 <= bits <= 63:
        raise ValueError(f"a comparison key reads 1 to 63 bits, not {bits}")
    if group not in GROUPS:
        raise ValueError(f"a comparison key's outputs are {' or '.join(GROUPS)}, not {group!r}")
    root = rng.uint64((2, n, 2))  # server, value, word
    value_rows = bits if group == "add" else 0
    padding = rng.uint64((2, n))  # the unused bits of right_t (and of final_cw in "xor") are random
    keys = [DCFKey(root[b], np.empty((bits, n, 2), dtype=U64), np.empty((value_rows, n), dtype=U64),
                   padding[0].copy(), padding[1].copy()) for b in (0, 1)]
    for start in range(0, n, CHUNK):
        part = slice(start, start + CHUNK)
        _keygen_chunk(root[:, part], alpha[part], beta[part], bits, keys, part, group == "xor")
    return keys[0], keys[1]


def _output_correction(lose_v, keep_v, v_alpha, beta_if_left_lost, t1, xor: bool):
    """The output correction of a level and the new difference along alpha's path (Fig. 1, lines 12-15)."""
    if xor:
        vcw = lose_v[1] ^ lose_v[0] ^ v_alpha ^ beta_if_left_lost
        return vcw, v_alpha ^ keep_v[1] ^ keep_v[0] ^ vcw
    sign = ONE - U64(2) * t1  # (-1)^t1
    vcw = sign * (lose_v[1] - lose_v[0] - v_alpha + beta_if_left_lost)
    return vcw, v_alpha - keep_v[1] + keep_v[0] + sign * vcw


def _keygen_chunk(root, alpha, beta, bits: int, keys, part: slice, xor: bool) -> None:
    """dcf_keygen for the values `part`, written into both keys' arrays."""
    n = alpha.size
    seed, t = root, np.repeat(np.array([[0], [1]], dtype=U64), n, axis=1)  # a root's t: its server's index
    v_alpha = np.zeros(n, dtype=U64)  # server 0's sum along alpha's path minus server 1's, so far
    right_t = keys[0].right_t[part] & ~((ONE << U64(bits)) - ONE)
    blocks = np.empty((2 if xor else 4, 2, n, 2), dtype=U64)  # children (and values); server, value, word
    hashed = _hash_buffer(blocks)
    low_bits = U64(3) if xor else ONE  # what a seed correction's low bits carry besides the seed
    encryptor = _hasher()
    for level in range(bits):
        position = U64(bits - 1 - level)
        a = (alpha >> position) & ONE  # keep the right child where alpha's bit is 1
        take_right = -a
        for tweak in range(blocks.shape[0]):
            blocks[tweak] = seed
            blocks[tweak, :, :, 1] ^= U64(tweak)
        out = _mmo(encryptor, blocks, hashed)
        left, right = out[0], out[1]
        t_left, t_right = left[:, :, 0] & ONE, right[:, :, 0] & ONE
        if xor:
            v_left, v_right = (left[:, :, 0] >> ONE) & ONE, (right[:, :, 0] >> ONE) & ONE
        else:
            v_left, v_right = out[2][:, :, 0], out[3][:, :, 0]
        # whole blocks as flat words, each value's mask repeated for its two words (a broadcast over the
        # last axis of 2 is several times slower)
        left_words, right_words = left.reshape(2, -1), right.reshape(2, -1)
        swap = (left_words ^ right_words) & np.repeat(take_right, 2)
        keep_seed, lose_seed = left_words ^ swap, right_words ^ swap
        swap_v = (v_left ^ v_right) & take_right
        vcw, v_alpha = _output_correction(v_right ^ swap_v, v_left ^ swap_v, v_alpha, beta & take_right, t[1], xor)
        tcw_left = t_left[0] ^ t_left[1] ^ a ^ ONE
        right_diff = tcw_left ^ t_right[0] ^ t_right[1] ^ a  # XOR the right control-bit correction
        right_t |= right_diff << position
        scw = (lose_seed[0] ^ lose_seed[1]).reshape(n, 2)
        scw[:, 0] = (scw[:, 0] & ~low_bits) | tcw_left | ((vcw << ONE) if xor else U64(0))
        seed = (keep_seed ^ (scw.reshape(-1) & np.repeat(-t, 2, axis=1))).reshape(2, n, 2)
        seed[:, :, 0] ^= right_diff & a & t  # on the right, the right correction of the control bit
        t = seed[:, :, 0] & ONE
        if xor:
            seed[:, :, 0] &= ~BIT1
        for key in keys:
            key.seed_cw[level, part] = scw
            if not xor:
                key.value_cw[level, part] = vcw
    if xor:  # the final output is bit 2 of the last seed
        final_cw = (keys[0].final_cw[part] & ~ONE) | ((((seed[1, :, 0] ^ seed[0, :, 0]) >> U64(2)) ^ v_alpha) & ONE)
    else:  # ... or its high word
        final_cw = (ONE - U64(2) * t[1]) * (seed[1, :, 1] - seed[0, :, 1] - v_alpha)
    for key in keys:
        key.right_t[part] = right_t
        key.final_cw[part] = final_cw


def dcf_eval(party: int, key: DCFKey, x: np.ndarray) -> np.ndarray:
    """This server's share of beta [x < alpha] for each x (< 2^bits), given its key: additive uint64
    (group "add") or an XOR share of the bit (0/1, "xor"). Walks the n paths of the tree level by
    level, CHUNK values at a time: per level one AES call of 2 or 1 blocks a value and about a dozen
    whole-array numpy operations, no loop over values."""
    x = np.asarray(x, dtype=U64).ravel()
    out = np.empty(x.size, dtype=U64)
    for start in range(0, x.size, CHUNK):
        part = slice(start, start + CHUNK)
        out[part] = _dcf_eval_chunk(party, key, x[part], part)
    return out


def _dcf_eval_chunk(party: int, key: DCFKey, x: np.ndarray, part: slice) -> np.ndarray:
    bits, xor = key.bits, key.group == "xor"
    positions = np.arange(bits - 1, -1, -1, dtype=U64)[:, None]  # the bit of x each level reads
    go_right = (x >> positions) & ONE
    right_fix = ((key.right_t[part] & x) >> positions) & ONE  # right-child control-bit corrections
    seed_cw, value_cw = key.seed_cw[:, part], key.value_cw[:, part]
    seed, t = key.seed[part], np.full(x.size, U64(party))
    total = np.zeros(x.size, dtype=U64)
    blocks = np.empty((1 if xor else 2, x.size, 2), dtype=U64)  # the child on x's side (, its value word)
    hashed = _hash_buffer(blocks)
    correction = np.empty((x.size, 2), dtype=U64)
    encryptor = _hasher()
    for level in range(bits):
        blocks[0] = seed
        blocks[0, :, 1] ^= go_right[level]
        if not xor:
            blocks[1] = blocks[0]
            blocks[1, :, 1] ^= U64(VALUE)
        out = _mmo(encryptor, blocks, hashed)
        mask = -t
        if not xor:
            total += out[1, :, 0]
            total += value_cw[level] & mask
        correction[:, 0] = mask  # (a broadcast mask[:, None] is several times slower)
        correction[:, 1] = mask
        correction &= seed_cw[level]
        seed = out[0] ^ correction
        seed[:, 0] ^= right_fix[level] & t
        t = seed[:, 0] & ONE
        if xor:
            total ^= seed[:, 0]  # bit 1: the corrected output bit
            seed[:, 0] &= ~BIT1
    if xor:
        return ((total >> ONE) ^ (seed[:, 0] >> U64(2)) ^ (key.final_cw[part] & t)) & ONE
    total += seed[:, 1] + (key.final_cw[part] & -t)
    return -total if party else total


# -- the sign of a shared value in one round -----------------------------------------------------------------
@dataclass(frozen=True)
class SignKey:
    """One server's material for the sign of n values of `width` bits: its share of the mask r, its share
    of r's top bit (additive for group "add", XOR in bit 0 for "xor"), and its DCF key for
    [c' < r mod 2^(width-1)] (scaled by 1 - 2 r_top in "add")."""
    r: np.ndarray
    top: np.ndarray
    dcf: DCFKey

    def to_wire(self):
        return self.r, self.top, self.dcf.to_wire()

    @classmethod
    def from_wire(cls, plain):
        r, top, dcf = plain
        return cls(r, top, DCFKey.from_wire(dcf))

    def nbytes(self) -> int:
        return self.r.nbytes + self.top.nbytes + self.dcf.nbytes()


def key_bytes(width: int, group: str = "add") -> int:
    """Bytes of SignKey per value and server: 16 + 24 (width - 1) + 32, or 16 + 16 (width - 1) + 32 ("xor")."""
    return 16 + (24 if group == "add" else 16) * (width - 1) + 32


def sign_keygen(rng, n: int, width: int = 64, group: str = "add") -> tuple[SignKey, SignKey]:
    """The dealer's side of less_than_zero for n values: a fresh mask r of `width` bits per value, and
    each server's SignKey. Nothing here depends on data; key_bytes(width, group) per value and server."""
    if width not in WIDTHS:
        raise ValueError(f"comparisons are {' or '.join(map(str, WIDTHS))} bits wide, not {width}")
    r = rng.uint64((n,))
    return sign_keys_for_masks(rng, r if width == 64 else r & U64(2**32 - 1), width, group)


def sign_keys_for_masks(rng, r: np.ndarray, width: int, group: str = "add") -> tuple[SignKey, SignKey]:
    """Both servers' SignKeys for the given masks r (< 2^width): sign_keygen with r chosen, which the
    tests use to reach every boundary of the mask too."""
    low_bits = U64(width - 1)
    top = r >> low_bits
    beta = ONE - U64(2) * top if group == "add" else np.ones_like(r)
    k0, k1 = dcf_keygen(rng, r & ((ONE << low_bits) - ONE), beta, width - 1, group)
    r0, t0 = rng.uint64(r.shape), rng.uint64(r.shape)
    return SignKey(r0, t0, k0), SignKey(r - r0, top - t0 if group == "add" else top ^ t0, k1)


def sign_from_opened(party: int, key: SignKey, c: np.ndarray, width: int = 64) -> np.ndarray:
    """This server's share of [x < 0] from the opened c = x + r (mod 2^width): local. For keys of group
    "add", additive (uint64, 0/1), whose bit 0 is also an XOR sharing of the bit (bit 0 of a sum
    carries into nothing); for "xor", an XOR share (0/1)."""
    c = np.asarray(c).astype(U64).ravel()
    low_bits = U64(width - 1)
    below = dcf_eval(party, key.dcf, c & ((ONE << low_bits) - ONE))
    c_top = c >> low_bits
    if key.dcf.group == "xor":
        return (below ^ key.top ^ (c_top if party == 0 else U64(0))) & ONE
    z = below + key.top  # r_top XOR [c' < r']
    out = z * (ONE - U64(2) * c_top)  # c_top XOR z = c_top + z - 2 c_top z, with c_top public
    if party == 0:
        out += c_top
    return out


def less_than_zero(srv, x: np.ndarray, key: SignKey, width: int = 64) -> np.ndarray:
    """Shares of [x < 0] for a shared uint64 array x, in one round: additive 0/1 in Z_2^64 (keys of group
    "add") or XOR bits ("xor"). Opens x + r (8 bytes a value each way for width 64, 4 for width 32,
    which requires -2^31 <= x < 2^31), then evaluates the DCF key locally. `key` is this server's
    SignKey for x.size values."""
    masked = x.ravel() + key.r
    if width < 64:
        masked = masked.astype(np.uint32)
    (c,) = srv.open(masked)
    return sign_from_opened(srv.index, key, c, width).reshape(x.shape)
