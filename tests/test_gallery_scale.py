"""Galleries held masked (ppfr.mpc.reuse.MaskedRows) and galleries in a 32-bit ring (frac <= 13): identify
against float64, incremental enrolment that opens only the new rows, removal, stored halves still private
and bound; with both kinds of session (threads and processes)."""
import os

import numpy as np
import pytest

from ppfr.gallery import Gallery, read_record
from ppfr.gallery import store
from ppfr.mpc.reuse import MaskedRows
from ppfr.storage import StorageError
from storage_util import db, halves

NARROW = 13
rng = np.random.default_rng(15)


def dlib_like(n, d=128):
    x = rng.normal(size=(n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True) * rng.uniform(0.8, 1.2, size=(n, 1))


def look_alikes(base, n, spread=0.25):
    """Synthetic identities near real ones (the benchmark's kind): base rows plus noise of norm ~spread,
    so they compete with the true match instead of lying far from every probe."""
    picked = base[rng.integers(0, len(base), n)]
    return picked + rng.normal(size=picked.shape) * spread / np.sqrt(base.shape[1])


def sq_dist(q, g):
    return ((q[:, None] - g[None]) ** 2).sum(-1)


def encoded(x, frac=NARROW):
    return np.rint(x * 2.0**frac) / 2.0**frac


@pytest.fixture(scope="module")
def gallery_data():
    people = dlib_like(30)
    vecs = np.concatenate([people + rng.normal(size=people.shape) * 0.02 for _ in range(3)] + [look_alikes(people, 150)])
    names = [f"p{i % 30}" for i in range(90)] + [f"synthetic{i}" for i in range(150)]
    probes = people + rng.normal(size=people.shape) * 0.03
    return names, vecs, probes


def test_narrow_galleries_are_32_bit_and_refuse_norms_they_cannot_hold():
    assert store.ring_bits(13) == 32 and store.ring_bits(14) == 64
    assert 1.9 < store.max_norm(13) < 2.0 and store.distance_limit(13) * 2.0**26 < 2**31 - 1
    from ppfr.gallery import encode_vectors
    encode_vectors(np.full((1, 4), 0.99), frac=13)
    with pytest.raises(ValueError, match="norms up to 1.99"):
        encode_vectors(np.full((1, 4), 1.01), frac=13)


def test_a_vector_within_the_norm_limit_that_rounds_above_it_is_refused():
    """The servers hold the vector rounded to 13 fractional bits: where rounding carries its norm over the
    limit (up to sqrt(d) 2^-14 above), the bounds on distances would not hold (an excluded entry could
    come out nearest), so it is refused, naming the rounded norm."""
    from ppfr.gallery import encode_vectors

    top, frac = store.max_norm(13), 13
    u = np.random.default_rng(1).normal(size=128)
    u /= np.linalg.norm(u)
    for scale in np.linspace(top, top * 1.001, 2000):   # a float vector under the limit, rounding above it
        k = np.rint(u * scale * 2**frac)
        v = (k - 0.4999 * np.sign(k)) / 2**frac         # encodes back to k
        if np.linalg.norm(v) <= top < np.linalg.norm(k) / 2**frac:
            break
    assert np.linalg.norm(v) <= top < np.linalg.norm(k) / 2**frac
    with pytest.raises(ValueError, match="rounds to norm 1.98998 at 13 fractional bits"):
        encode_vectors(v[None], frac=frac)
    encode_vectors((v * 0.999)[None], frac=frac)


@pytest.mark.parametrize("frac", [NARROW, 20])
def test_identify_every_mode_equals_float64(tmp_path, session, gallery_data, frac):
    """The nearest entry under MPC is float64's nearest on the encoded vectors, in every mode; distances
    exact on the encoded vectors (the 32-bit ring drops nothing)."""
    names, vecs, probes = gallery_data
    want = sq_dist(encoded(probes, frac), encoded(vecs, frac))
    nearest = want.argmin(1)
    assert (nearest == sq_dist(probes, vecs).argmin(1)).all()       # the rounding changes no rank-1 here
    best = np.sort(want.min(1))                 # a tolerance in the widest gap between nearest distances
    k = int(np.argmax(np.diff(best)))
    tolerance = float(np.sqrt((best[k] + best[k + 1]) / 2))
    with Gallery(tmp_path, frac_bits=frac, session=session, batch=7) as g:
        g.enroll_many(names, vecs, chunk_rows=64)              # shared in four messages, one change
        every = g.identify(probes, reveal="all", tolerance=tolerance)
        near = g.identify(probes, reveal="nearest", tolerance=tolerance)
        match = g.identify(probes, reveal="match", tolerance=tolerance)
    for i, (a, n, m) in enumerate(zip(every, near, match)):
        j = nearest[i]
        assert a.entry == n.entry == j and abs(n.squared_distance - want[i, j]) < 1e-9
        assert m.name == (names[j] if want[i, j] <= tolerance**2 else None)
    assert any(m.name is None for m in match) and any(m.name is not None for m in match)


@pytest.mark.parametrize("frac", [NARROW, 20])
def test_any_tolerance_the_config_allows_matches_as_float64(tmp_path, gallery_data, frac):
    """A tolerance far beyond every distance (100, the config's largest: 10,000 squared, beyond the
    fixed-point encoder's 256 at 40 fractional bits) matches every probe's nearest entry, and the session
    goes on to a tight one; each decision is float64's."""
    from ppfr.mpc.session import LocalSession

    names, vecs, probes = gallery_data
    want = sq_dist(encoded(probes, frac), encoded(vecs, frac))
    best = np.sort(want.min(1))                 # a tight tolerance in the widest gap between nearest distances
    k = int(np.argmax(np.diff(best)))
    tight = float(np.sqrt((best[k] + best[k + 1]) / 2))
    with LocalSession() as session, Gallery(tmp_path, frac_bits=frac, session=session) as g:
        g.enroll_many(names, vecs)
        for tolerance in (100.0, tight):
            got = [m.name for m in g.identify(probes, reveal="match", tolerance=tolerance)]
            assert got == [names[j] if want[i, j] <= tolerance**2 else None for i, j in enumerate(want.argmin(1))]
            assert (None in got) == (tolerance == tight)


def test_galleries_refuse_more_fractional_bits_than_exclusion_allows():
    """An excluded entry gets 2^60 ring units: above every real squared distance up to 22 fractional bits."""
    from ppfr.gallery import encode_vectors

    encode_vectors(np.full((1, 4), 0.5), frac=22)
    with pytest.raises(ValueError, match="must be in 8..22, got 24"):
        encode_vectors(np.full((1, 4), 0.5), frac=24)


def test_narrow_distances_near_the_limit_and_exclusion(tmp_path, session):
    """Entries at the norm limit, opposite each other (the largest squared distance the ring holds), and
    an excluded row that would otherwise be nearest."""
    top = store.max_norm(NARROW) * 0.999
    g0 = dlib_like(8)
    vecs = np.concatenate([g0 / np.linalg.norm(g0, axis=1, keepdims=True) * top, g0[:1] * 0.5])
    probes = -vecs[:3]
    with Gallery(tmp_path, frac_bits=NARROW, session=session) as g:
        g.enroll_many([f"e{i}" for i in range(len(vecs))], vecs)
        far = g.identify(probes, reveal="nearest")
        left_out = g.identify(vecs[:3], reveal="nearest", exclude=np.arange(3))
    want = sq_dist(encoded(probes), encoded(vecs))
    assert [h.entry for h in far] == list(want.argmin(1))
    assert max(h.squared_distance for h in far) > 2.0
    d = sq_dist(encoded(vecs[:3]), encoded(vecs))
    d[np.arange(3), np.arange(3)] = np.inf
    assert [h.entry for h in left_out] == list(d.argmin(1))


def online_to_peer(session):
    return session.stats()["server0"].bytes_to["server1"]


def test_enrolment_into_a_masked_gallery_opens_only_the_new_rows(tmp_path, session, gallery_data):
    names, vecs, probes = gallery_data
    with Gallery(tmp_path, frac_bits=NARROW, session=session) as g:
        g.enroll_many(names[:200], vecs[:200])
        g.identify(probes[:1])                                 # masks the 200 rows: 200 x 128 x 4 bytes
        before = online_to_peer(session)
        g.enroll_many(names[200:], vecs[200:], chunk_rows=16)  # 40 new rows, in three messages
        enrolled = online_to_peer(session) - before
        after = g.identify(probes, reveal="nearest")
        queried = online_to_peer(session) - before - enrolled
    agree = 65                                                 # the servers check they hold one version
    assert enrolled == 40 * 128 * 4 + agree
    # 30 probes x 128 coordinates, the tournament, and no opening of any gallery row
    assert queried < 30 * 128 * 4 + agree + 40 * 30 * 240 * 8
    assert [h.entry for h in after] == list(sq_dist(encoded(probes), encoded(vecs)).argmin(1))


def test_removal_then_identify(tmp_path, session, gallery_data):
    names, vecs, probes = gallery_data
    with Gallery(tmp_path, frac_bits=NARROW, session=session) as g:
        g.enroll_many(names, vecs)
        g.identify(probes[:2])
        assert g.remove("p3") == 3
        keep = [i for i, n in enumerate(names) if n != "p3"]
        got = g.identify(probes, reveal="nearest")
    want = sq_dist(encoded(probes), encoded(vecs[keep])).argmin(1)
    assert [h.entry for h in got] == list(want)


def test_a_narrow_half_is_private_packed_and_bound(tmp_path, gallery_data):
    names, vecs, probes = gallery_data
    with Gallery(tmp_path, frac_bits=NARROW) as g:
        g.enroll_many(names, vecs)
    rec = read_record(tmp_path).to_json()
    h0, h1 = halves(tmp_path, store.KIND, rec)
    assert h0.header["meta"] == {"dim": 128, "frac_bits": NARROW, "ring_bits": 32}
    assert h0.rows.shape == (len(vecs), 65)                    # 64 words of two coordinates, and the norm
    e0, n0 = store.unpack_rows(h0.rows, 128, NARROW)
    e1, n1 = store.unpack_rows(h1.rows, 128, NARROW)
    assert np.array_equal((e0 + e1).view(np.int32) / 2.0**NARROW, encoded(vecs))
    for i in (0, 1):
        assert os.stat(db(tmp_path, i)).st_mode & 0o777 == 0o600
    import sqlite3
    with sqlite3.connect(db(tmp_path, 0)) as c:               # one changed share of one block
        blob = bytearray(c.execute("SELECT data FROM rows LIMIT 1").fetchone()[0])
        blob[3] ^= 1
        c.execute("UPDATE rows SET data = ? WHERE rowid = (SELECT MIN(rowid) FROM rows)", (bytes(blob),))
    with Gallery(tmp_path, frac_bits=NARROW) as g, pytest.raises(StorageError, match="modified"):
        g.identify(probes[:1])


def test_masked_rows_match_the_plain_product(session):
    """MaskedRows by itself, over several chunks and appends, in both rings: Q G^T exactly."""
    g = rng.integers(-2**20, 2**20, size=(70_001, 4))
    q = rng.integers(-2**10, 2**10, size=(3, 4))
    for bits, signed in ((32, np.int32), (64, np.int64)):
        job = session.run(_masked_product, bits)
        for x in (g[:70_000], g[70_000:], q):
            session.client.share(x, frac=0)
        z0, z1 = job.result()
        assert np.array_equal((z0 + z1).view(signed), (q @ g.T).astype(signed))


def _masked_product(srv, bits):
    first, more, q = srv.receive(), srv.receive(), srv.receive()
    rows = MaskedRows(srv, "test", 4, bits)
    rows.append(first.share)
    rows.append(more.share)
    return rows.products(q.share)


def test_switching_comparison_methods_in_a_session_draws_no_material_for_the_other(tmp_path, gallery_data):
    """A planned step (the argmin's tournament) is recorded per comparison method, so alternating methods
    query by query (benchmarks/identify_scaling.py) costs each query what a session of one method costs."""
    names, vecs, probes = gallery_data
    mixed = _offline_per_query(tmp_path / "mixed", names, vecs, probes, ("bitwise", "fss") * 2)
    for method in ("bitwise", "fss"):
        alone = _offline_per_query(tmp_path / method, names, vecs, probes, (method,) * 2)
        assert mixed[method][-1] == alone[method][-1], (method, mixed, alone)


def _offline_per_query(root, names, vecs, probes, methods) -> dict:
    from ppfr.mpc import LocalSession, protocols

    spent = {}
    with LocalSession() as session, Gallery(root, frac_bits=NARROW, session=session, batch=1) as g:
        g.enroll_many(names, vecs)
        for method in methods:
            session.run(protocols.use_comparisons, method).result()
            before = session.stats()["server0"].copy()
            g.identify(probes[:1])
            spent.setdefault(method, []).append((session.stats()["server0"] - before).offline_bytes)
    return spent


def test_a_tolerance_beyond_every_distance_a_narrow_gallery_holds(tmp_path, session, gallery_data):
    """match with a tolerance whose square exceeds the 32-bit ring's range: everyone is within it."""
    names, vecs, probes = gallery_data
    with Gallery(tmp_path, frac_bits=NARROW, session=session) as g:
        g.enroll_many(names[:20], vecs[:20])
        got = g.identify(-probes[:3], reveal="match", tolerance=5.0)
    assert [h.entry for h in got] == list(sq_dist(encoded(-probes[:3]), encoded(vecs[:20])).argmin(1))


def test_a_large_record_is_written_compact_and_reads_back(tmp_path, gallery_data, monkeypatch):
    """Records of many rows skip json's indentation (seconds for a million names): same content."""
    from ppfr.storage import record as stored

    names, vecs, probes = gallery_data
    monkeypatch.setattr(stored, "INDENTED_ROWS", 100)
    with Gallery(tmp_path, frac_bits=NARROW) as g:
        g.enroll_many(names[:50], vecs[:50])
        assert "\n " in store.record_path(tmp_path).read_text()
        g.enroll_many(names[50:], vecs[50:])
        assert "\n" not in store.record_path(tmp_path).read_text()
        assert read_record(tmp_path).names() == names
        assert [h.entry for h in g.identify(probes[:3])] == list(sq_dist(encoded(probes[:3]), encoded(vecs)).argmin(1))
