"""The secret-shared gallery: MPC distances against numpy float64, the CLI round trip on real LFW faces,
refusal of tampered or mismatched halves, atomic enrolment and removal."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from ppfr.gallery import Gallery, GalleryError, pair_distances, read_record
from ppfr.gallery import cli
from ppfr.mpc import LocalSession, open_session
from storage_util import halves, plaintext

FRAC = 20
# Each coordinate is rounded to 2^-21 at worst, so |d_fixed - d| <= 2 * sum|a_i - b_i| * 2^-21 + ...;
# for vectors like dlib's (|a - b|_1 < 16) that is below 2e-5. Observed errors are ~1e-6.
TOL = 2e-5
rng = np.random.default_rng(6)


def unit_like(n, d=128):
    """Vectors shaped like dlib embeddings: entries ~ +-0.1, norms ~ 1."""
    x = rng.normal(size=(n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True) * rng.uniform(0.8, 1.2, size=(n, 1))


def sq_dist(q, g):
    return ((np.asarray(q, np.float64)[:, None] - np.asarray(g, np.float64)[None]) ** 2).sum(-1)


@pytest.fixture(scope="module")
def session():
    with LocalSession() as s:
        yield s


@pytest.fixture
def people():
    """Six people of 1-4 vectors each, clustered so that each person is nearer to themself."""
    centres = unit_like(6)
    names, vecs = [], []
    for i, c in enumerate(centres):
        for _ in range(1 + i % 4):
            names.append(f"person{i}")
            vecs.append(c + rng.normal(size=128) * 0.02)
    return names, np.array(vecs)


def enrolled(root, names, vecs, **kw):
    g = Gallery(root, **kw)
    for name in dict.fromkeys(names):
        g.enroll(name, vecs[[i for i, n in enumerate(names) if n == name]])
    return g


# -- distances under MPC against float64 ----------------------------------------------------------------------
def test_pair_distances_match_float64(session):
    a, b = unit_like(500), unit_like(500)
    b[:50] = a[:50] + rng.normal(size=(50, 128)) * 0.01      # near pairs too
    got = pair_distances(a, b, session=session)
    want = ((a - b) ** 2).sum(1)
    assert got.shape == (500,)
    assert np.abs(got - want).max() <= TOL


@pytest.mark.parametrize("comparisons", ["bitwise", "fss"])
def test_identify_all_nearest_match_agree_with_float64(tmp_path, people, comparisons):
    names, vecs = people
    queries = np.concatenate([vecs[::2] + rng.normal(size=vecs[::2].shape) * 0.03, unit_like(5)])
    want = sq_dist(queries, vecs)
    # a tolerance well away from every nearest distance, so the float64 decision is unambiguous
    nearest = np.sort(want.min(1))
    gaps = np.diff(nearest)
    k = int(np.argmax(gaps))
    tolerance = float(np.sqrt((nearest[k] + nearest[k + 1]) / 2))
    assert gaps[k] > 1e-3
    with open_session("threads", comparisons=comparisons) as session, \
            enrolled(tmp_path, names, vecs, batch=3, session=session) as g:  # a last batch of another size
        every = g.identify(queries, reveal="all", tolerance=tolerance, top=2)
        near = g.identify(queries, reveal="nearest", tolerance=tolerance)
        match = g.identify(queries, reveal="match", tolerance=tolerance)
    for i, (a, n, m) in enumerate(zip(every, near, match)):
        j = int(np.argmin(want[i]))
        expected = names[j] if want[i, j] <= tolerance ** 2 else None
        assert a.name == n.name == m.name == expected
        assert a.nearest == n.nearest == names[j]
        assert abs(a.squared_distance - want[i, j]) <= TOL and abs(n.squared_distance - want[i, j]) <= TOL
        assert m.squared_distance is None and (m.nearest is None) == (expected is None)
        assert [c[0] for c in a.candidates] == list(dict.fromkeys(names[x] for x in np.argsort(want[i])))[:2]


def test_exclude_leaves_an_entry_out(tmp_path, people):
    names, vecs = people
    with enrolled(tmp_path, names, vecs) as g:
        own = g.identify(vecs[:4], reveal="nearest")
        left_out = g.identify(vecs[:4], reveal="nearest", exclude=np.arange(4))
    d = sq_dist(vecs[:4], vecs)
    assert [h.entry for h in own] == [0, 1, 2, 3] and all(h.squared_distance <= TOL for h in own)
    d[np.arange(4), np.arange(4)] = np.inf
    assert [h.entry for h in left_out] == list(np.argmin(d, 1))


def test_a_query_opens_only_its_own_rows_once_the_gallery_is_masked(tmp_path, people):
    """The gallery's n x d masked rows are opened once (ppfr.mpc.reuse.MaskedRows); a query then costs
    each server m x d ring elements towards the other server (and its share of the answer towards the
    client)."""
    names, vecs = people
    with enrolled(tmp_path, names, vecs) as g:
        g.identify(vecs[:2], reveal="all")                      # opens the masked gallery
        server0 = g.parties.session.network.channel("server0").stats
        before = server0.copy()
        g.identify(vecs[2:5], reveal="all")                     # the same masked rows
        spent = server0 - before
    to_peer = spent.bytes_to["server1"]
    # 3 queries x 128 coordinates, and the 65 bytes by which the servers check they hold one version
    assert to_peer == 3 * 128 * 8 + 65
    answer = 3 * len(vecs) * 8                                  # the 3 x n distances, plus a short header
    assert answer <= spent.bytes_to["client"] < answer + 64


# -- the CLI on real LFW faces ------------------------------------------------------------------------------
def _run(command, args):
    result = CliRunner().invoke(command, [*map(str, args), "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_enroll_identify_verify_remove_round_trip_on_lfw(tmp_path, lfw_image):
    from ppfr.embed.detect import FaceDetector, read_rgb
    from ppfr.embed.embedders import make_embedder
    from ppfr.embed.pipeline import embed_image

    gallery = tmp_path / "gallery"
    enrol = {"George_W_Bush": [1, 2], "Colin_Powell": [1, 2], "Tony_Blair": [1, 2]}
    probes = [lfw_image("George_W_Bush", 3), lfw_image("Colin_Powell", 3), lfw_image("Tony_Blair", 3),
              lfw_image("Aaron_Eckhart", 1)]
    for person, numbers in enrol.items():
        out = _run(cli.enroll, [person, *[lfw_image(person, k) for k in numbers], "--gallery", gallery])
        assert out["enrolled"] == 2 and not out["skipped"]
    rec = read_record(gallery)
    assert rec.names() == [p for p, ns in enrol.items() for _ in ns] and rec.version == 3

    # plaintext reference: the same pipeline, float64 distances
    detector, embedder = FaceDetector("hog"), make_embedder("dlib")
    emb = lambda path: embed_image(read_rgb(path), detector, embedder)[0].astype(np.float64)  # noqa: E731
    gallery_vecs = np.array([emb(lfw_image(p, k)) for p, ns in enrol.items() for k in ns])
    probe_vecs = np.array([emb(p) for p in probes])
    d = sq_dist(probe_vecs, gallery_vecs)

    for reveal in ("nearest", "all", "match"):
        out = _run(cli.identify, [*probes, "--gallery", gallery, "--reveal", reveal])
        for i, r in enumerate(out["results"]):
            j = int(np.argmin(d[i]))
            expected = rec.names()[j] if d[i, j] <= 0.36 else None
            assert r["name"] == expected, (reveal, r)
            if reveal != "match":
                assert r["nearest"] == rec.names()[j] and abs(r["squared_distance"] - d[i, j]) <= TOL
    # and the plaintext answers are the truth: three enrolled people found, the stranger unknown
    assert [r["name"] for r in out["results"]] == ["George_W_Bush", "Colin_Powell", "Tony_Blair", None]

    same = _run(cli.verify, [probes[0], lfw_image("George_W_Bush", 1)])
    other = _run(cli.verify, [probes[0], probes[3]])
    assert abs(same["squared_distance"] - d[0, 0]) <= TOL and same["same"] == (d[0, 0] <= 0.36)
    want = ((probe_vecs[0] - probe_vecs[3]) ** 2).sum()
    assert abs(other["squared_distance"] - want) <= TOL and other["same"] == (want <= 0.36)

    out = _run(cli.remove, ["Colin_Powell", "--gallery", gallery])
    assert out["removed"] == 2 and out["entries"] == 4
    out = _run(cli.identify, [probes[1], "--gallery", gallery])
    assert out["results"][0]["nearest"] != "Colin_Powell"


def test_cli_errors_are_clear(tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli.remove, ["Nobody", "--gallery", str(tmp_path)])
    assert result.exit_code == 1 and "no gallery" in result.output
    for command in (cli.enroll, cli.identify, cli.verify, cli.remove):
        assert runner.invoke(command, ["--help"]).exit_code == 0


# -- refusing bad input ------------------------------------------------------------------------------------
def test_mixing_embedders_dimensions_or_bad_values_is_refused(tmp_path, people):
    names, vecs = people
    with enrolled(tmp_path, names, vecs) as g:
        with pytest.raises(GalleryError, match="openface"):
            g.enroll("x", vecs[:1], embedder="openface_nn4.small2")
        with pytest.raises(ValueError, match="length 128"):
            g.identify(np.zeros((1, 64)))
        with pytest.raises(ValueError, match="norm"):
            g.enroll("x", vecs[:1] * 100)
        with pytest.raises(ValueError, match="NaN"):
            g.identify(np.full((1, 128), np.nan))
    with pytest.raises(GalleryError, match="enrol someone first"), Gallery(tmp_path / "none") as g:
        g.identify(vecs[:1])


# -- changes ----------------------------------------------------------------------------------------------
def _reconstruct(root):
    """The gallery as the two halves on disk hold it (what a colluding pair would see; tests only)."""
    rec = read_record(root)
    return rec, plaintext(root, "gallery", rec.to_json(), FRAC)[:, :128]


def test_removing_a_person_removes_them_from_both_halves(tmp_path, people):
    names, vecs = people
    with enrolled(tmp_path, names, vecs) as g:
        gone = "person3"
        rows = [i for i, n in enumerate(names) if n == gone]
        assert g.remove(gone) == len(rows) == 4
        rec, emb = _reconstruct(tmp_path)
        keep = [i for i, n in enumerate(names) if n != gone]
        assert rec.names() == [names[i] for i in keep]
        # each half has exactly the remaining rows, and together they are the remaining vectors
        assert [len(h.rows) for h in halves(tmp_path, "gallery", rec.to_json())] == [len(keep)] * 2
        assert np.abs(emb - vecs[keep]).max() <= 2.0**-FRAC
        hits = g.identify(vecs[rows], reveal="nearest")
        assert all(h.nearest != gone for h in hits)
        with pytest.raises(GalleryError, match="not enrolled"):
            g.remove(gone)
        with Gallery(tmp_path) as other:     # another client changes the gallery: this one sees it
            other.enroll(gone, vecs[rows[:1]])
        assert g.identify(vecs[rows[:1]])[0].name == gone
