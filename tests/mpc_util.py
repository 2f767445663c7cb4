"""Helpers for the engine tests: run a program on both servers and reconstruct its output."""
from __future__ import annotations

import math

import numpy as np


def reveal_result(srv, program, inputs: int):
    """Run by both servers: receive `inputs` shared tensors, reveal program(*them) to the client."""
    srv.reveal_to(program(*[srv.receive() for _ in range(inputs)]))


def evaluate(session, program, *inputs, fracs=None):
    """Share `inputs` from the client, run program(*shared) on both servers, reconstruct the result.
    fracs[i] = 0 shares inputs[i] as ring integers. `program` must pickle for a ProcessSession: a
    module-level function, an operator (operator.add), or a functools.partial of one."""
    fracs = fracs or [None] * len(inputs)
    job = session.run(reveal_result, program, len(inputs))
    for x, f in zip(inputs, fracs):
        session.client.share(x, frac=f)
    out = session.client.reconstruct()
    job.result()
    return out


def encoded(x, frac=16):
    """What the client actually shares: x rounded to the fixed-point grid."""
    return np.rint(np.asarray(x, dtype=np.float64) * 2.0**frac) / 2.0**frac


def chi_square_uniform_bytes(data: bytes) -> tuple[float, float]:
    """(statistic, critical value at p = 1e-6) of a chi-square test that the bytes are uniform."""
    counts = np.bincount(np.frombuffer(data, dtype=np.uint8), minlength=256)
    expected = len(data) / 256
    stat = float(((counts - expected) ** 2 / expected).sum())
    k, z = 255, 4.753  # Wilson-Hilferty approximation of the chi-square quantile
    critical = k * (1 - 2 / (9 * k) + z * math.sqrt(2 / (9 * k))) ** 3
    return stat, critical
