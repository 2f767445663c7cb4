"""What each party can compute from its view, and the properties that privacy means.

A party's view is everything it holds and receives (`Session.record_views`, channel.Channel.view). From a
server's view this module reconstructs what that server can compute: every value the two servers opened
between them (its own message + the other's, combined as the message's tags say), the shares it got
from the client, and the dealer material it got. The properties (README, "Threat model"):

- every opened value is uniform: no opening looks like data (`assert_openings_uniform`);
- no mask or triple is used twice: no two openings differ by something small (`assert_no_reuse`);
- an opening is independent of the server's own material: it does not unmask by its own share of a mask
  (`assert_independent_of_material`), which is what a dealer that gives one server a whole mask allows;
- the same program on two inputs of the same sizes gives views of the same shape, and two runs give
  independent values (`assert_same_shape`, `assert_runs_independent`);
- the dealer receives requests only, identical for any two inputs (`assert_dealer_views_equal`).

"Looks like data" is tested on the top byte: a uniform ring element has a top byte of 0x00 or 0xFF with
probability 2/256, while a fixed-point value, a bit, an index or the difference of two such values has one
almost always; and on the low byte, which a mask without low bits leaves to the data (one value too common). A count is refused when its binomial tail is below 2^-30 (a Chernoff bound), so a
leak of a handful of elements is caught while the whole suite's false alarms stay below 1e-6.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

SERVERS = ("server0", "server1")
OPENING_TAGS = ("open", "retry", "repair")
REDONE_TAGS = ("retry", "repair")  # rounds decided by what was opened (uniform): left out of a view's shape
SMALL_P = 2 / 256
LOG_REJECT = 30 * math.log(2)


@dataclass
class Opening:
    op: str             # "+", "^" or "bits"
    value: np.ndarray   # what both servers now know (bits: unpacked, one per element)
    step: int           # its place in the server's openings
    tag: str = "open"   # or "retry"/"repair": a redone truncation


@dataclass
class ServerView:
    name: str
    openings: list = field(default_factory=list)
    inputs: list = field(default_factory=list)      # shares received from the client
    material: list = field(default_factory=list)    # every array the dealer sent it, flat
    shape: list = field(default_factory=list)       # (direction, peer, tags and array shapes) of each message


def arrays(message):
    if isinstance(message, np.ndarray):
        yield message
    elif isinstance(message, (list, tuple)):
        for m in message:
            yield from arrays(m)
    elif isinstance(message, dict):
        for m in message.values():
            yield from arrays(m)


def _shape_of(message):
    """A message with every array replaced by its dtype and shape, every number by its type."""
    if isinstance(message, np.ndarray):
        return (str(message.dtype), message.shape)
    if isinstance(message, (list, tuple)):
        return tuple(_shape_of(m) for m in message)
    if isinstance(message, dict):
        return tuple(sorted((k, _shape_of(v)) for k, v in message.items()))
    if isinstance(message, str):
        return message if len(message) != 16 else "<session id>"
    return type(message).__name__


def _combine(op, mine, theirs):
    if op == "+":
        return mine + theirs
    if op == "^":
        return mine ^ theirs
    if op == "bits":  # the last byte's padding is 0 on both sides: leave it out
        return np.unpackbits((mine ^ theirs)[:-1]).astype(np.uint64)
    raise AssertionError(f"an opening combines by {op!r}, which this module does not know")


def server_view(name: str, events) -> ServerView:
    peer = SERVERS[1 - SERVERS.index(name)]
    view, sent = ServerView(name), []
    received = []
    for direction, other, message in events:
        if not (other == peer and message[0] in REDONE_TAGS):  # redone truncations: random, not data
            view.shape.append((direction, other, _shape_of(message)))
        if other == peer and message[0] in OPENING_TAGS:
            (sent if direction == "send" else received).append(message)
        elif direction == "recv" and other == "client" and message[0] == "share":
            view.inputs.append(np.asarray(message[3]).ravel())
        elif direction == "recv" and other == "dealer":
            view.material.extend(a.ravel() for a in arrays(message))
    assert len(sent) == len(received), f"{name} sent {len(sent)} openings and received {len(received)}"
    for (tag, ops, mine), (_, their_ops, theirs) in zip(sent, received):
        assert tuple(ops) == tuple(their_ops)
        for op, a, b in zip(ops, mine, theirs):
            view.openings.append(Opening(op, _combine(op, np.asarray(a), np.asarray(b)).ravel(),
                                         len(view.openings), tag))
    return view


def views(session, wait: float = 10.0) -> dict:
    """Each server's reconstructed view, and the raw views of the dealer and the client. Material a
    program asked for ahead (provider.prepare) may still be on its way to the dealer when the program
    returns: wait (at most `wait` seconds) until the dealer has received every request the servers sent,
    so that the dealer's view is whole, not cut at a moment that depends on the threads' timing."""
    deadline = time.monotonic() + wait
    raw = session.views()
    while not _dealer_caught_up(raw) and time.monotonic() < deadline:
        time.sleep(0.01)
        raw = session.views()
    out = {name: server_view(name, raw[name]) for name in SERVERS}
    out["dealer"], out["client"] = raw["dealer"], raw["client"]
    return out


def _dealer_caught_up(raw) -> bool:
    sent = {s: sum(1 for d, p, _ in raw[s] if d == "send" and p == "dealer") for s in SERVERS}
    received = {s: sum(1 for d, p, _ in raw["dealer"] if d == "recv" and p == s) for s in SERVERS}
    return sent == received


# -- statistics -------------------------------------------------------------------------------------------------
def _top_byte_small(values: np.ndarray) -> np.ndarray:
    bits = 8 * values.dtype.itemsize
    top = (values >> np.array(bits - 8, dtype=values.dtype)).astype(np.uint8)
    return (top == 0) | (top == 255)


def _too_many(count: int, n: int, p: float, log_reject: float = LOG_REJECT) -> bool:
    """Is `count` of n events of probability p implausibly many (binomial tail below 2^-30)?"""
    if n == 0 or count <= n * p:
        return False
    q = count / n
    kl = q * math.log(q / p) + ((1 - q) * math.log((1 - q) / (1 - p)) if q < 1 else 0.0)
    return n * kl > log_reject


def _low_bytes_repeat(values: np.ndarray) -> bool:
    """Does one low byte come up implausibly often (the tail of the commonest of 256, by a union bound)?
    A mask whose low bits are missing leaves them to the data: constant inputs, constant low bytes."""
    counts = np.bincount((values & np.array(255, dtype=values.dtype)).astype(np.int64), minlength=256)
    return _too_many(int(counts.max()), values.size, 1 / 256, LOG_REJECT + math.log(256))


def looks_like_data(values: np.ndarray, op: str = "+") -> bool:
    """Uniform ring elements (or words, or bits) would almost never look like this: too many top bytes
    of 0x00 or 0xFF (or, for bits, too many zeros or ones); or, given enough values, a histogram of top
    bytes that is not flat (a fixed offset, values that repeat)."""
    values = np.asarray(values).ravel()
    if op == "bits":
        ones = int(values.sum())
        return _too_many(ones, values.size, 0.5) or _too_many(values.size - ones, values.size, 0.5)
    if _too_many(int(_top_byte_small(values).sum()), values.size, SMALL_P) or _low_bytes_repeat(values):
        return True
    return values.size >= 10 * 256 and _top_bytes_uneven(values)


def _top_bytes_uneven(values: np.ndarray) -> bool:
    """A chi-square test of the top bytes' histogram against flat, at p = 1e-9 (Wilson-Hilferty)."""
    bits = 8 * values.dtype.itemsize
    counts = np.bincount((values >> np.array(bits - 8, dtype=values.dtype)).astype(np.uint8), minlength=256)
    expected = values.size / 256
    stat = float(((counts - expected) ** 2 / expected).sum())
    k, z = 255, 6.0
    return stat > k * (1 - 2 / (9 * k) + z * math.sqrt(2 / (9 * k))) ** 3


# -- the properties ---------------------------------------------------------------------------------------------
def assert_openings_uniform(view: ServerView, min_openings: int = 1):
    assert len(view.openings) >= min_openings, f"{view.name} opened {len(view.openings)} values, too few to test"
    for o in view.openings:
        assert not looks_like_data(o.value, o.op), (
            f"{view.name}: opening {o.step} ({o.op}, {o.value.size} values) is not uniform: a value opened unmasked")


def assert_inputs_uniform(view: ServerView):
    for i, share in enumerate(view.inputs):
        assert not looks_like_data(share), f"{view.name}: input share {i} from the client is not uniform"


def _related(a_value: np.ndarray, b_value: np.ndarray, op: str):
    """Is a_value plus, minus or XOR b_value structured (a shared mask, a repeated value)?"""
    if op in ("^", "bits"):
        return looks_like_data(a_value ^ b_value, op)
    return looks_like_data(a_value - b_value) or looks_like_data(a_value + b_value)


PREFIX_MIN = 1024  # large openings of different sizes are also compared on their common first elements


def assert_no_reuse(view: ServerView):
    """Two openings under one mask differ by the difference of their values: structured, not uniform.
    Openings of one size are compared whole; large ones of different sizes on their common prefix too,
    which catches a mask drawn again for a grown or shrunk matrix (a gallery masked anew after a removal
    re-opening its first rows under the old mask)."""
    by_kind: dict = {}
    for o in view.openings:
        by_kind.setdefault((o.op, o.value.dtype, o.value.size), []).append(o)
    for (op, _, _), group in by_kind.items():
        for i, a in enumerate(group):
            for b in group[i + 1:]:
                assert not _related(a.value, b.value, op), (
                    f"{view.name}: openings {a.step} and {b.step} are related: one mask used twice")
    large: dict = {}
    for o in view.openings:
        if o.value.size >= PREFIX_MIN:
            large.setdefault((o.op, o.value.dtype), []).append(o)
    for (op, _), group in large.items():
        for i, a in enumerate(group):
            for b in group[i + 1:]:
                if a.value.size != b.value.size:
                    m = min(a.value.size, b.value.size)
                    assert not _related(a.value.ravel()[:m], b.value.ravel()[:m], op), (
                        f"{view.name}: openings {a.step} and {b.step} are related on their first {m} "
                        f"values: one mask used twice")


def assert_independent_of_material(view: ServerView):
    """An opening combined with the server's own share of any material stays uniform: no server holds
    enough of a mask to remove it."""
    by_size: dict = {}
    for m in view.material:
        by_size.setdefault(m.size, []).append(m)
    for o in view.openings:
        # bits: the opening lost its last byte (up to 8 values) to padding, see _combine
        sizes = range(o.value.size, o.value.size + 9) if o.op == "bits" else (o.value.size,)
        for m in (m for size in sizes for m in by_size.get(size, ())):
            m = (m[:o.value.size] & np.uint64(1)) if o.op == "bits" else m.astype(o.value.dtype)
            assert not _related(o.value, m, o.op), (
                f"{view.name}: opening {o.step} is unmasked by its own dealer material: the dealer gave it a whole mask")


def assert_server_private(view: ServerView, min_openings: int = 1):
    assert_inputs_uniform(view)
    assert_openings_uniform(view, min_openings)
    assert_no_reuse(view)
    assert_independent_of_material(view)


def assert_same_shape(a: ServerView, b: ServerView):
    """The messages of two runs on inputs of the same sizes: the same kinds, tags and shapes, in order."""
    assert len(a.shape) == len(b.shape), f"{a.name}: {len(a.shape)} messages for one input, {len(b.shape)} for another"
    for i, (x, y) in enumerate(zip(a.shape, b.shape)):
        assert x == y, f"{a.name}: message {i} differs between two inputs of the same sizes: {x} vs {y}"


def assert_runs_independent(a: ServerView, b: ServerView):
    """Two runs share no randomness: their openings at the same step are unrelated, and so are the
    client's shares (a generator with a fixed key would repeat them)."""
    planned = [[o for o in v.openings if o.tag == "open"] for v in (a, b)]
    for x, y in zip(*planned):
        assert not _related(x.value, y.value, x.op), f"{a.name}: opening {x.step} repeats across two runs"
    for i, (x, y) in enumerate(zip(a.inputs, b.inputs)):
        assert not looks_like_data(x - y), f"{a.name}: the client's share {i} repeats across two runs"


def dealer_requests(events) -> list:
    """What the dealer received: requests only, each (sender, ticket, kind, fields, the first ticket of its
    message); no arrays at all."""
    out = []
    for direction, sender, message in events:
        if direction != "recv":
            continue
        assert not list(arrays(message)), f"the dealer received arrays from {sender}"
        assert message[0] == "ask", f"the dealer received {message[0]!r} from {sender}"
        # a run of consecutive tickets (provider.Provider._send); where a run starts is part of the view
        _, first, requests = message
        out += [(sender, first + i, kind, fields, first) for i, (kind, fields) in enumerate(requests)]
    return out


def assert_dealer_views_equal(a_events, b_events):
    a, b = dealer_requests(a_events), dealer_requests(b_events)
    assert a, "the dealer received no request: nothing to test"
    assert len(a) == len(b), f"the dealer received {len(a)} requests for one input and {len(b)} for another"
    for i, (x, y) in enumerate(zip(a, b)):
        assert x[:4] == y[:4], f"the dealer's request {i} depends on the input: {x[2]} {x[3]} vs {y[2]} {y[3]}"
        assert x == y, (f"how the dealer's requests are grouped depends on the input: request {i} comes in a "
                        f"message from ticket {x[4]} for one input, from {y[4]} for another")


def client_results(events) -> list:
    """What the client received: the servers' result shares, added up (ring elements)."""
    got = {s: [m[3] for d, p, m in events if d == "recv" and p == s and m[0] == "result"] for s in SERVERS}
    assert len(got["server0"]) == len(got["server1"])
    return [np.asarray(a) + np.asarray(b) for a, b in zip(got["server0"], got["server1"])]


def check_program(session_factory, program, inputs_a, inputs_b, min_openings: int = 1):
    """Run `program` (a module-level function of the servers' received tensors) on two input sets of the
    same sizes and once more on the first; assert every property of a server's and the dealer's view.
    Returns the three runs' views for further checks."""
    runs = [run_recorded(session_factory, program, inputs) for inputs in (inputs_a, inputs_b, inputs_a)]
    assert_dealer_views_equal(runs[0]["dealer"], runs[1]["dealer"])
    for name in SERVERS:
        assert_server_private(runs[0][name], min_openings)
        assert_server_private(runs[1][name], min_openings)
        assert_same_shape(runs[0][name], runs[1][name])
        assert_runs_independent(runs[0][name], runs[2][name])
    return runs


def run_recorded(session_factory, program, inputs):
    """Share `inputs`, run program(*received tensors) on both servers (a module-level function, so that
    it runs in server processes too), reveal its result to the client; every party's view."""
    with session_factory() as session:
        session.record_views()
        job = session.run(apply_program, program, len(inputs))
        for x in inputs:
            session.client.share(x)
        session.client.reconstruct_raw()
        job.result()
        return views(session)


def apply_program(srv, program, n_inputs):
    out = program(*[srv.receive() for _ in range(n_inputs)])
    srv.reveal_to(out[0] if isinstance(out, tuple) else out)
