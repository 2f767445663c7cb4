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
WIDTHS = (8, 16, 32, 64)  # 8 and 16 for small integers (counts), 32 for |x| < 2^31
CHUNK = 16384  # values walked through the tree together: fewer numpy calls a value, a working set of a few MB


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
    output correction); value_cw (bits, m, n) the output corrections of group "add", m words a value
    ((0, 0, n) in "xor"); right_t (n,), bit `bits-1-i` = the XOR of the left and right control-bit
    corrections of level i (the bit of x that level reads), other bits random; final_cw (m, n) in
    "add", (n,) in "xor". Output words lie word-major (m, n): a level adds whole rows."""
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

    @property
    def words(self) -> int:
        """Output words per value (group "add"; 1 in "xor")."""
        return max(1, self.value_cw.shape[1])

    def to_wire(self):
        return tuple(getattr(self, f.name) for f in fields(self))

    @classmethod
    def from_wire(cls, plain):
        return cls(*plain)

    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.to_wire())


def dcf_keygen(rng, alpha: np.ndarray, beta: np.ndarray, bits: int, group: str = "add") -> tuple[DCFKey, DCFKey]:
    """Keys for f_i(x) = beta_i [x < alpha_i], alpha_i < 2^bits, beta_i in Z_2^64 or, shape (n, m), in
    (Z_2^64)^m ("add"), or in {0, 1} ("xor"; Boyle et al. 2021, Fig. 1, whose construction holds for any
    abelian output group), for all n values at once: both servers' trees are walked side by side along
    alpha, CHUNK values at a time, one AES call per level (2 + 2 ceil(m/2) or 2 blocks per server and
    value). Inputs are read from their most significant bit."""
    alpha = np.asarray(alpha, dtype=U64).ravel()
    n = alpha.size
    beta = np.ascontiguousarray(np.asarray(beta, dtype=U64).reshape(n, -1).T)  # word-major (m, n)
    if not 1 <= bits <= 63:
        raise ValueError(f"a comparison key reads 1 to 63 bits, not {bits}")
    if group not in GROUPS:
        raise ValueError(f"a comparison key's outputs are {' or '.join(GROUPS)}, not {group!r}")
    if group == "xor" and beta.shape[0] != 1:
        raise ValueError("a key of group xor outputs one bit a value")
    words = beta.shape[0] if group == "add" else 0
    root = rng.uint64((2, n, 2))  # server, value, word
    padding = rng.uint64((2, n))  # the unused bits of right_t (and of final_cw in "xor") are random
    final = (lambda: np.empty((words, n), dtype=U64)) if words else (lambda: padding[1].copy())
    keys = [DCFKey(root[b], np.empty((bits, n, 2), dtype=U64), np.empty((bits if words else 0, words, n), dtype=U64),
                   padding[0].copy(), final()) for b in (0, 1)]
    for start in range(0, n, CHUNK):
        part = slice(start, start + CHUNK)
        _keygen_chunk(root[:, part], alpha[part], beta[:, part], bits, keys, part, group == "xor")
    return keys[0], keys[1]


def _output_correction(lose_v, keep_v, v_alpha, beta_if_left_lost, t1, xor: bool):
    """The output corrections of a level and the new differences along alpha's path (Fig. 1, lines
    12-15), for every output word (arrays (m, n); lose_v and keep_v (m, 2, n), by server)."""
    if xor:
        vcw = lose_v[:, 1] ^ lose_v[:, 0] ^ v_alpha ^ beta_if_left_lost
        return vcw, v_alpha ^ keep_v[:, 1] ^ keep_v[:, 0] ^ vcw
    sign = ONE - U64(2) * t1  # (-1)^t1
    vcw = sign * (lose_v[:, 1] - lose_v[:, 0] - v_alpha + beta_if_left_lost)
    return vcw, v_alpha - keep_v[:, 1] + keep_v[:, 0] + sign * vcw


def _tweaked(blocks: np.ndarray, seed: np.ndarray, tweaks) -> None:
    """blocks[i] = seed with tweaks[i] XORed into its high word."""
    blocks[:] = seed
    for i, tweak in enumerate(tweaks):
        if tweak:  # (a scalar XOR on each block: faster on long rows than one broadcast of all the tweaks)
            blocks[i, ..., 1] ^= U64(tweak)


def _words(value_blocks: np.ndarray, words: int) -> np.ndarray:
    """The first m output words of hashed value blocks (blocks, ..., 2) -> (m, ...), word 2j + k from
    word k of block j."""
    if words == 1:  # a view
        return value_blocks[:1, ..., 0]
    last = value_blocks.ndim - 1  # (np.moveaxis(value_blocks, -1, 1), at a fraction of its overhead)
    return value_blocks.transpose(0, last, *range(1, last)).reshape(-1, *value_blocks.shape[1:-1])[:words]


def _word(value_blocks: np.ndarray, w: int) -> np.ndarray:
    """Output word w of hashed value blocks (blocks, ..., 2): word w % 2 of block w // 2 (a view)."""
    return value_blocks[w // 2][..., w % 2]


def _keygen_chunk(root, alpha, beta, bits: int, keys, part: slice, xor: bool) -> None:
    """dcf_keygen for the values `part`, written into both keys' arrays."""
    n, words = alpha.size, beta.shape[0]
    value_blocks = 0 if xor else -(-words // 2)
    tweaks = [0, 1] + [VALUE + i for i in range(2 * value_blocks)]  # children; left, right value blocks
    seed, t = root, np.repeat(np.array([[0], [1]], dtype=U64), n, axis=1)  # a root's t: its server's index
    v_alpha = np.zeros((words, n), dtype=U64)  # server 0's sum along alpha's path minus server 1's, so far
    right_t = keys[0].right_t[part] & ~((ONE << U64(bits)) - ONE)
    blocks = np.empty((len(tweaks), 2, n, 2), dtype=U64)  # children (and values); server, value, word
    hashed = _hash_buffer(blocks)
    low_bits = U64(3) if xor else ONE  # what a seed correction's low bits carry besides the seed
    encryptor = _hasher()
    for level in range(bits):
        position = U64(bits - 1 - level)
        a = (alpha >> position) & ONE  # keep the right child where alpha's bit is 1
        take_right = -a
        _tweaked(blocks, seed, tweaks)
        out = _mmo(encryptor, blocks, hashed)
        left, right = out[0], out[1]
        t_left, t_right = left[:, :, 0] & ONE, right[:, :, 0] & ONE
        if xor:
            v_left, v_right = (left[None, :, :, 0] >> ONE) & ONE, (right[None, :, :, 0] >> ONE) & ONE
        else:  # (word, server, value): all words at once
            v_left, v_right = _words(out[2::2], words), _words(out[3::2], words)
        swap_v = (v_left ^ v_right) & take_right
        vcw, v_alpha = _output_correction(v_right ^ swap_v, v_left ^ swap_v, v_alpha, beta & take_right, t[1], xor)
        # whole blocks as flat words, each value's mask repeated for its two words (a broadcast over the
        # last axis of 2 is several times slower)
        left_words, right_words = left.reshape(2, -1), right.reshape(2, -1)
        swap = (left_words ^ right_words) & take_right.repeat(2)
        keep_seed, lose_seed = left_words ^ swap, right_words ^ swap
        tcw_left = t_left[0] ^ t_left[1] ^ a ^ ONE
        right_diff = tcw_left ^ t_right[0] ^ t_right[1] ^ a  # XOR the right control-bit correction
        right_t |= right_diff << position
        scw = (lose_seed[0] ^ lose_seed[1]).reshape(n, 2)
        scw[:, 0] = (scw[:, 0] & ~low_bits) | tcw_left | ((vcw[0] << ONE) if xor else U64(0))
        seed = (keep_seed ^ (scw.reshape(-1) & (-t).repeat(2, axis=1))).reshape(2, n, 2)
        seed[:, :, 0] ^= right_diff & a & t  # on the right, the right correction of the control bit
        t = seed[:, :, 0] & ONE
        if xor:
            seed[:, :, 0] &= ~BIT1
        keys[0].seed_cw[level, part] = scw
        if not xor:
            keys[0].value_cw[level, :, part] = vcw
    keys[1].seed_cw[:, part] = keys[0].seed_cw[:, part]  # the corrections are both servers'
    keys[1].value_cw[:, :, part] = keys[0].value_cw[:, :, part]
    for key in keys:
        key.right_t[part] = right_t
    if xor:  # the final output is bit 2 of the last seed
        final_cw = (keys[0].final_cw[part] & ~ONE) | ((((seed[1, :, 0] ^ seed[0, :, 0]) >> U64(2)) ^ v_alpha[0]) & ONE)
    else:  # ... or the value words of the last seed, hashed
        converted = _words_of(encryptor, seed, words)  # (m, server, n)
        final_cw = (ONE - U64(2) * t[1]) * (converted[:, 1] - converted[:, 0] - v_alpha)
    for key in keys:
        key.final_cw[..., part] = final_cw


def _words_of(encryptor, seeds: np.ndarray, words: int) -> np.ndarray:
    """The m output words of seeds (..., 2) that no level expands (the leaves): their value blocks
    (tweaks VALUE, VALUE + 2, ...) hashed -> (m, ...)."""
    blocks = np.empty((-(-words // 2), *seeds.shape), dtype=U64)
    _tweaked(blocks, seeds, range(VALUE, VALUE + 2 * blocks.shape[0], 2))
    hashed = _mmo(encryptor, blocks, _hash_buffer(blocks))
    return np.stack([_word(hashed, w) for w in range(words)])


def dcf_eval(party: int, key: DCFKey, x: np.ndarray) -> np.ndarray:
    """This server's share of beta [x < alpha] for each x (< 2^bits), given its key: additive uint64
    (group "add"; shape (n,) for one output word, (n, m) for m) or an XOR share of the bit (0/1, "xor").
    Walks the n paths of the tree level by level, CHUNK values at a time: per level one AES call of
    1 + ceil(m/2) or 1 blocks a value and about a dozen whole-array numpy operations, no loop over values."""
    x = np.asarray(x, dtype=U64).ravel()
    words = key.words
    out = np.empty((words if key.group == "add" else 1, x.size), dtype=U64)
    for start in range(0, x.size, CHUNK):
        part = slice(start, start + CHUNK)
        out[:, part] = _dcf_eval_chunk(party, key, x[part], part)
    return out[0] if out.shape[0] == 1 else out.T


def _dcf_eval_chunk(party: int, key: DCFKey, x: np.ndarray, part: slice) -> np.ndarray:
    bits, xor, words = key.bits, key.group == "xor", key.words
    positions = np.arange(bits - 1, -1, -1, dtype=U64)[:, None]  # the bit of x each level reads
    go_right = (x >> positions) & ONE
    right_fix = ((key.right_t[part] & x) >> positions) & ONE  # right-child control-bit corrections
    seed_cw, value_cw = key.seed_cw[:, part], key.value_cw[:, :, part]
    seed, t = key.seed[part], np.full(x.size, U64(party))
    total = np.zeros((1 if xor else words, x.size), dtype=U64)
    value_blocks = 0 if xor else -(-words // 2)
    blocks = np.empty((1 + value_blocks, x.size, 2), dtype=U64)  # the child on x's side (, its value words)
    tweaks = np.array([0] + [VALUE + 2 * j for j in range(value_blocks)], dtype=U64)[:, None]
    hashed = _hash_buffer(blocks)
    correction = np.empty((x.size, 2), dtype=U64)
    corrected = np.empty_like(total)
    encryptor = _hasher()
    for level in range(bits):
        blocks[:] = seed
        blocks[:, :, 1] ^= tweaks ^ go_right[level]
        out = _mmo(encryptor, blocks, hashed)
        mask = -t
        if not xor:
            for w in range(words):
                total[w] += _word(out[1:], w)
            np.bitwise_and(value_cw[level], mask, out=corrected)
            total += corrected
        correction[:, 0] = mask  # (a broadcast mask[:, None] is several times slower)
        correction[:, 1] = mask
        correction &= seed_cw[level]
        seed = out[0] ^ correction
        seed[:, 0] ^= right_fix[level] & t
        t = seed[:, 0] & ONE
        if xor:
            total[0] ^= seed[:, 0]  # bit 1: the corrected output bit
            seed[:, 0] &= ~BIT1
    if xor:
        return ((total[0] >> ONE) ^ (seed[:, 0] >> U64(2)) ^ (key.final_cw[part] & t)) & ONE
    total += _words_of(encryptor, seed, words) + (key.final_cw[:, part] & -t)
    return -total if party else total


# -- the sign of a shared value in one round -----------------------------------------------------------------
OPENED = dict(zip(WIDTHS, (np.uint8, np.uint16, np.uint32, np.uint64)))  # what c = x + r is opened as, by width


@dataclass(frozen=True)
class SignKey:
    """One server's material for the sign of n values of `width` bits: its share of the mask r, its shares
    of r's top bit (additive for group "add", (n, 1 + p) with the products r_top b_j; XOR in bit 0 for
    "xor", (n,)), of the payload masks b_j ((n, p), additive; p = 0 in "xor"), and its DCF key for
    [c' < r mod 2^(width-1)] (scaled by (1 - 2 r_top) (1, b_1, .., b_p) in "add")."""
    r: np.ndarray
    top: np.ndarray
    masks: np.ndarray
    dcf: DCFKey

    @property
    def payloads(self) -> int:
        return self.masks.shape[1]

    def to_wire(self):
        return self.r, self.top, self.masks, self.dcf.to_wire()

    @classmethod
    def from_wire(cls, plain):
        r, top, masks, dcf = plain
        return cls(r, top, masks, DCFKey.from_wire(dcf))

    def nbytes(self) -> int:
        return self.r.nbytes + self.top.nbytes + self.masks.nbytes + self.dcf.nbytes()


def key_bytes(width: int, group: str = "add", payloads: int = 0) -> int:
    """Bytes of SignKey per value and server, m = 1 + payloads output words: in "add" a seed (16), per
    level a seed and m output corrections (16 + 8m), the right control bits (8), the final correction
    (8m), r (8), r_top and its products (8m), the payload masks (8 (m - 1)): 16 + (16 + 8m)(width - 1)
    + 8 + 24m (1,560 for width 64 without payloads); 16 + 16 (width - 1) + 32 in "xor"."""
    if group == "xor":
        return 16 + 16 * (width - 1) + 32
    m = 1 + payloads
    return 16 + (16 + 8 * m) * (width - 1) + 8 + 24 * m


def sign_keygen(rng, n: int, width: int = 64, group: str = "add", payloads: int = 0) -> tuple[SignKey, SignKey]:
    """The dealer's side of less_than_zero (and, with payloads, of select_by_sign) for n values: a fresh
    mask r of `width` bits per value, fresh payload masks, and each server's SignKey. Nothing here
    depends on data; key_bytes(width, group, payloads) per value and server."""
    if width not in WIDTHS:
        raise ValueError(f"comparisons are {', '.join(map(str, WIDTHS))} bits wide, not {width}")
    r = rng.uint64((n,))
    return sign_keys_for_masks(rng, r if width == 64 else r & U64(2**width - 1), width, group, payloads)


def sign_keys_for_masks(rng, r: np.ndarray, width: int, group: str = "add",
                        payloads: int = 0) -> tuple[SignKey, SignKey]:
    """Both servers' SignKeys for the given masks r (< 2^width): sign_keygen with r chosen, which the
    tests use to reach every boundary of the mask too."""
    if group == "xor" and payloads:
        raise ValueError("payloads need keys of group add")
    n, low_bits = r.size, U64(width - 1)
    top = r >> low_bits
    b = rng.uint64((n, payloads))
    if group == "add":  # z_j = b_j (r_top XOR [c' < r']) = b_j r_top + b_j (1 - 2 r_top) [c' < r'], b_0 = 1
        scale = np.concatenate([np.ones((n, 1), dtype=U64), b], axis=1)
        beta, top = (ONE - U64(2) * top)[:, None] * scale, top[:, None] * scale
    else:
        beta = np.ones_like(r)
    k0, k1 = dcf_keygen(rng, r & ((ONE << low_bits) - ONE), beta, width - 1, group)
    r0, t0, b0 = rng.uint64(r.shape), rng.uint64(top.shape), rng.uint64(b.shape)
    return (SignKey(r0, t0, b0, k0),
            SignKey(r - r0, top - t0 if group == "add" else top ^ t0, b - b0, k1))


def sign_from_opened(party: int, key: SignKey, c: np.ndarray, width: int = 64) -> np.ndarray:
    """This server's share of s = [x < 0] from the opened c = x + r (mod 2^width): local. For keys of
    group "add", additive (uint64, 0/1), whose bit 0 is also an XOR sharing of the bit (bit 0 of a sum
    carries into nothing), and with payloads, shape (n, 1 + p): s, then s b_j for each payload mask;
    for "xor", an XOR share (0/1)."""
    c = np.asarray(c).astype(U64).ravel()
    low_bits = U64(width - 1)
    below = dcf_eval(party, key.dcf, c & ((ONE << low_bits) - ONE))
    c_top = c >> low_bits
    if key.dcf.group == "xor":
        return (below ^ key.top ^ (c_top if party == 0 else U64(0))) & ONE
    z = below.reshape(c.size, -1) + key.top  # b_j (r_top XOR [c' < r']), (n, 1 + p)
    # b_j (c_top XOR z_0) = c_top b_j + (1 - 2 c_top) z_j, with c_top public
    out = z * (ONE - U64(2) * c_top)[:, None]
    out[:, 1:] += key.masks * c_top[:, None]
    if party == 0:
        out[:, 0] += c_top
    return out[:, 0] if key.payloads == 0 else out


def _open_masked(srv, x: np.ndarray, key: SignKey, width: int, payloads=()):
    """One round: open c = x + r (as `width`-bit words; shares reduced mod 2^width, exact) and f_j = v_j - b_j."""
    masked = (x.ravel() + key.r).astype(OPENED[width])
    return srv.open(masked, *[v.ravel() - key.masks[:, j] for j, v in enumerate(payloads)])


def less_than_zero(srv, x: np.ndarray, key: SignKey, width: int = 64) -> np.ndarray:
    """Shares of [x < 0] for a shared uint64 array x, in one round: additive 0/1 in Z_2^64 (keys of group
    "add") or XOR bits ("xor"). Opens x + r (width/8 bytes a value each way, which requires
    -2^(width-1) <= x < 2^(width-1) for width < 64), then evaluates the DCF key locally. `key` is this
    server's SignKey for x.size values, without payloads."""
    (c,) = _open_masked(srv, x, key, width)
    return sign_from_opened(srv.index, key, c, width).reshape(x.shape)


def select_by_sign(srv, x: np.ndarray, payloads, key: SignKey, width: int = 64):
    """Additive shares of s = [x < 0] and of s v for each shared payload v (uint64 arrays of x's size),
    all in ONE round: the servers open c = x + r and f = v - b together; the key gives s and s b
    (sign_from_opened), so s v = f s + s b is local (a Beaver product whose second factor's mask the
    dealer folded into the comparison key). Costs width/8 + 8 p bytes a value each way; `key` has
    len(payloads) payloads. Returns (s, [s v, ...]), each of x's shape."""
    c, *opened = _open_masked(srv, x, key, width, payloads)
    out = sign_from_opened(srv.index, key, c, width)
    s = out[:, 0]
    return s.reshape(x.shape), [(f * s + out[:, 1 + j]).reshape(x.shape) for j, f in enumerate(opened)]
