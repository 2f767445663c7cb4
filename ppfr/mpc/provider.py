"""The provider: where a server's protocols get their correlated randomness, typed (material.py).

Protocols ask for what they need by kind and shape — `provider.triples(specs)`, `provider.comparison(n,
width)` — and get a `Pending` whose `get()` is the material. The provider owns the plumbing:

1. Tickets. Both servers run the same program, so they number their requests the same way. Each server
   sends its requests to the dealer, a run of consecutive tickets a message; the dealer checks that the
   two agree, ticket by ticket, and echoes each request with its material, which the provider checks
   too (dealer.Dealer).
2. Asking ahead. A request is sent when it is made and taken when it is used, so the dealer draws while
   the servers compute.
3. Planning. A step whose requests depend only on its shapes (softmax, exp, a tournament) runs inside
   `plan(step, *shapes)`: the first time, the provider records what it asks for; afterwards it sends it
   all on entry, in one message, and matches each request against what was sent. `prepare(step,
   *shapes)` sends it before the step is entered (the next query's material while this one runs: the
   offline phase). One message for a step's fifteen requests instead of fifteen: each message costs
   both ends a walk, a queue and a wake-up, in one process about as much as drawing a small request.
4. Spares. A truncation is redone, rarely, when its opening could have wrapped. Requests that truncate
   carry spare pairs (material.spare_count, sized by the request alone); the provider keeps them and a
   redone truncation takes them (`spare_truncation`, `spare_triple`) without a word to the dealer. So what
   the dealer sees is the same for any two inputs of the same sizes.
"""
from __future__ import annotations

import contextlib
from collections import deque

import numpy as np

from .errors import ProtocolAborted, SessionMismatch
from .lut import TABLE_MAX_VALUES
from .material import (AndRequest, ComparisonRequest, ExpTableRequest, FSSComparisonRequest, MATERIAL_OF,
                       MaskedChainRequest, RowMaskRequest, RowProductsRequest, SelectionRequest, SquaresRequest,
                       Triple, TriplesRequest, TruncationPair, TruncationRequest, UpdateThenProductRequest,
                       RequestReader, TableComparisonRequest, WithSpares, spares_for)
from .protocols import TABLES_MAX_WORDS

RESERVE_CAP = 1 << 16  # spare values kept per shift (older spares are dropped: both servers drop the same)


class Pending:
    """Material asked for and not yet taken."""
    __slots__ = ("_provider", "ticket", "request")

    def __init__(self, provider: "Provider", ticket: int, request):
        self._provider, self.ticket, self.request = provider, ticket, request

    def get(self):
        return self._provider._take(self)

    def wait(self) -> "Pending":
        """Wait until the dealer has answered, and keep the material for get(): a step that asked ahead
        ends with its request answered, so that what the dealer has received when a job ends does not
        depend on timing."""
        while self.ticket not in self._provider._arrived:
            self._provider._receive()
        return self


class Provider:
    def __init__(self, channel, bound_bits: int):
        self.channel = channel
        self.bound_bits = bound_bits
        self._request = RequestReader()  # reads the dealer's echoes
        self._next_ticket = 0
        self._arrived: dict = {}       # ticket -> (echoed request, material wire form), arrived early
        self._plans: dict = {}         # _plan_key(step, shapes) -> the requests the step made
        self._recording: list | None = None
        self._prefetched: deque | None = None
        self._prepared: dict = {}      # _plan_key(step, shapes) -> runs of Pendings asked ahead (prepare)
        self._spare_pairs: dict = {}   # shift -> SpareReserve of (r, r >> shift)
        self._spare_triples = SpareReserve()
        self.comparisons = "bitwise"   # how this server's comparisons run: see protocols.use_comparisons
        self.table_words = TABLES_MAX_WORDS  # bitwise comparisons of up to so many words by tables
                                             # (protocols.use_comparison_tables)
        self.exp_tables = TABLE_MAX_VALUES  # with FSS comparisons, exp by tables for calls of up to so many
                                            # values (lut.use_exp_tables)

    @property
    def requests_sent(self) -> int:
        """How many requests this server has sent the dealer (one ticket each)."""
        return self._next_ticket

    # -- what protocols ask for ---------------------------------------------------------------------------
    def triples(self, specs) -> Pending:
        """Beaver triples for products [(op, shape_x, shape_y)], op "mul" or "matmul": [Triple]."""
        return self._ask(TriplesRequest(tuple((op, tuple(sx), tuple(sy)) for op, sx, sy in specs)))

    def squares(self, shapes) -> Pending:
        """Square pairs (a, a*a): [SquarePair]."""
        return self._ask(SquaresRequest(tuple(tuple(s) for s in shapes)))

    def truncation(self, segments) -> Pending:
        """Truncation pairs for runs of ((count, shift), ...): one TruncationPair for all of them."""
        segments = tuple((int(n), int(s)) for n, s in segments)
        return self._ask(TruncationRequest(segments, spares_for(segments, self.bound_bits)))

    def comparison(self, n: int, radices: tuple, width: int = 64) -> Pending:
        """For the sign of n values of `width` bits: ComparisonMaterial."""
        return self._ask(ComparisonRequest(int(n), tuple(radices), int(width)))

    def table_comparison(self, n: int, width: int = 64) -> Pending:
        """For the sign of n values of `width` bits by tables (protocols.msb_by_tables): TableComparisonMaterial."""
        return self._ask(TableComparisonRequest(int(n), int(width)))

    def fss_comparison(self, n: int, width: int = 64, group: str = "xor", payloads: int = 0) -> Pending:
        """For the sign of n values of `width` bits in one round, by function secret sharing, and with
        `payloads` for its products with that many shared vectors in the same round: fss.SignKey."""
        return self._ask(FSSComparisonRequest(int(n), int(width), group, int(payloads)))

    def exp_table(self, n: int, low_bits: int, high_bits: int) -> Pending:
        """For exp by tables on n values (lut.exp_nonpositive): ExpTable."""
        return self._ask(ExpTableRequest(int(n), int(low_bits), int(high_bits)))

    def ands(self, n: int, variables: int, monomials) -> Pending:
        """For ANDs of literals of XOR-shared words in one round: AndMaterial."""
        return self._ask(AndRequest(int(n), int(variables), tuple(tuple(m) for m in monomials)))

    def selection(self, n: int, count: int) -> Pending:
        """To multiply n XOR-shared bits by `count` shared vectors: SelectionMaterial."""
        return self._ask(SelectionRequest(int(n), int(count)))

    def masked_chain(self, n: int, steps) -> Pending:
        """For a chain of products on masked values (material.MaskedChainRequest): MaskedChain. A redone
        truncation breaks one value's mask, or k values' after a ("sum", ..., k) step: each takes a spare
        triple to repair."""
        steps = tuple(steps)
        truncated = [(n, s[2]) for s in steps if s[0] == "trunc"]
        spread = max([int(s[3]) for s in steps if s[0] == "sum"], default=1)
        return self._ask(MaskedChainRequest(int(n), steps, spares_for(truncated, self.bound_bits, triples=spread)))

    def update_then_product(self, count: int, shift: int, left: tuple, right: tuple) -> Pending:
        """To truncate an update U of a matrix W (its first values) and, in the same round, open the masks
        of the next product x @ (W - U) (protocols.truncate_with_next_product): UpdateThenProduct."""
        return self._ask(UpdateThenProductRequest(int(count), int(shift), tuple(map(int, left)), tuple(map(int, right)),
                                                  spares_for([(count, shift)], self.bound_bits)))

    def row_mask(self, mask: str, start: int, rows: int, cols: int, bits: int, capacity: int = 0) -> Pending:
        """Rows [start, start + rows) of the dealer's row mask `mask` (start 0: a new mask, with room for
        `capacity` rows): RowMask."""
        return self._ask(RowMaskRequest(str(mask), int(start), int(rows), int(cols), int(bits), int(capacity)))

    def row_products(self, mask: str, rows: int, queries: int, cols: int, bits: int) -> Pending:
        """For `queries` rows times the first `rows` rows of row mask `mask`, transposed: RowProducts."""
        return self._ask(RowProductsRequest(str(mask), int(rows), int(queries), int(cols), int(bits)))

    def spare_truncation(self, shifts: np.ndarray) -> TruncationPair:
        """Pairs for values whose truncation is redone, one per value (shifts: one per value), from the
        spares that earlier requests brought. No message: the dealer never learns that it happened."""
        r, high = np.empty(shifts.size, dtype=np.uint64), np.empty(shifts.size, dtype=np.uint64)
        for shift in np.unique(shifts):
            where = np.flatnonzero(shifts == shift)
            reserve = self._spare_pairs.get(int(shift)) or SpareReserve()
            r[where], high[where] = reserve.draw(where.size, f"truncation pairs (shift {int(shift)})")
        return TruncationPair(r, high)

    def spare_triple(self, n: int) -> Triple:
        """n elementwise triples (shape (n,)) from the spares, for repairs after redone truncations."""
        return Triple(*self._spare_triples.draw(n, "triples"))

    # -- planning -----------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def plan(self, step: str, *shapes):
        """Run a step whose requests depend only on its shapes: record them the first time; afterwards
        send them all on entry, so the dealer works ahead instead of on the critical path."""
        if self._recording is not None or self._prefetched is not None:
            yield  # already inside a planned step
            return
        key = self._plan_key(step, shapes)
        if self._prepared.get(key):  # asked for ahead (prepare): on its way or here already
            self._prefetched = self._prepared[key].popleft()
        elif key in self._plans:
            self._prefetched = deque(self._send(self._plans[key]))
        else:
            self._recording = []
            try:
                yield
                self._plans[key] = self._recording
            finally:
                self._recording = None
            return
        try:
            yield
            for pending in self._prefetched:  # both servers drain what went unused, in the same order
                pending.get()
        finally:
            self._prefetched = None

    def prepare(self, step: str, *shapes) -> bool:
        """Ask now for the material of the next run of a planned step (one already recorded): the offline
        phase of that run, e.g. the next query's keys while this one runs. Both servers call it at the
        same point of their program; the next plan(step, *shapes) takes it instead of asking. False (and
        nothing asked) if the step has not run yet."""
        key = self._plan_key(step, shapes)
        recorded = self._plans.get(key)
        if recorded is None or self._recording is not None:
            return False
        self._prepared.setdefault(key, deque()).append(deque(self._send(recorded)))
        return True

    def requests_of(self, step: str, *shapes) -> tuple:
        """What a planned step asks the dealer for (recorded on its first run; empty before): shapes and
        counts only, e.g. to time the dealer's share of the step on its own."""
        return tuple(self._plans.get(self._plan_key(step, shapes), ()))

    def _plan_key(self, step: str, shapes: tuple) -> tuple:
        """What a planned step asks for depends on its shapes and on how this server computes (the
        comparison method, comparisons and exp by tables up to what size): switching any records anew."""
        return step, self.comparisons, self.table_words, self.exp_tables, shapes

    def await_material(self) -> None:
        """Inside a planned step, wait until all that it asked for ahead has arrived: what follows is the
        online phase alone (as with a dealer working ahead on a machine of its own)."""
        for pending in self._prefetched or ():
            while pending.ticket not in self._arrived:
                self._receive()

    # -- plumbing ---------------------------------------------------------------------------------------
    def _ask(self, request) -> Pending:
        if self._prefetched and self._prefetched[0].request == request:
            return self._prefetched.popleft()
        if self._recording is not None:
            self._recording.append(request)
        return self._send((request,))[0]

    def _send(self, requests) -> list:
        """Ask for requests under the next tickets, in one message: ("ask", first ticket, ((kind, fields),
        ...)). Pendings, one a request."""
        if not requests:  # a planned step that asks for nothing
            return []
        first = self._next_ticket
        self._next_ticket += len(requests)
        # shapes and counts, which nobody changes: handed over as they are
        self.channel.send("dealer", ("ask", first, tuple(r.to_wire() for r in requests)), copy=False)
        return [Pending(self, first + i, request) for i, request in enumerate(requests)]

    def _receive(self) -> None:
        """The dealer's next answer: ("material", first ticket, ((kind, fields, material), ...)), for
        consecutive tickets of one ask."""
        message = self.channel.recv("dealer")
        if not (isinstance(message, tuple) and len(message) == 3 and message[0] == "material"
                and isinstance(message[2], (tuple, list))):
            raise SessionMismatch(f"{self.channel.name} expected material from the dealer")
        _, first, answers = message
        for i, answer in enumerate(answers):
            if not (isinstance(answer, (tuple, list)) and len(answer) == 3):
                raise SessionMismatch(f"{self.channel.name} expected material from the dealer")
            kind, values, material = answer
            self._arrived[first + i] = (self._request(kind, values), material)

    def _take(self, pending: Pending):
        while pending.ticket not in self._arrived:
            self._receive()
        echoed, plain = self._arrived.pop(pending.ticket)
        if echoed != pending.request:
            raise ProtocolAborted(f"the dealer answered ticket {pending.ticket} with {echoed.kind} material, "
                                  f"not the {pending.request.kind} asked for")
        material = MATERIAL_OF[type(pending.request)](plain)
        if isinstance(material, WithSpares):
            self._keep(material.spares)
            return material.main
        return material

    def _keep(self, spares) -> None:
        for (shift, _), pair in zip(spares.shifts, spares.pairs):
            self._spare_pairs.setdefault(shift, SpareReserve()).add((pair.r, pair.r_high))
        if spares.triple is not None:
            self._spare_triples.add((spares.triple.a, spares.triple.b, spares.triple.c))


class SpareReserve:
    """Blocks of spare values (each block a tuple of equal-length arrays), oldest first, at most
    RESERVE_CAP values: older ones are dropped, by both servers alike (they see the same openings)."""

    def __init__(self):
        self._blocks: deque = deque()
        self._size = 0

    def add(self, block) -> None:
        self._blocks.append(block)
        self._size += block[0].size
        while self._size - self._blocks[0][0].size >= RESERVE_CAP:
            self._size -= self._blocks.popleft()[0].size

    def draw(self, n: int, what: str):
        """n values from the oldest blocks; fails closed if too few are left."""
        if n > self._size:
            raise ProtocolAborted(f"spare {what} ran out (probability below 2^-40 per request): run it again")
        parts, need = [], n
        while need:
            block = self._blocks[0]
            take = min(need, block[0].size)
            parts.append(tuple(a[:take] for a in block))
            if take == block[0].size:
                self._blocks.popleft()
            else:
                self._blocks[0] = tuple(a[take:] for a in block)
            need -= take
        self._size -= n
        return tuple(np.concatenate(col) if len(parts) > 1 else col[0] for col in zip(*parts))
