"""Privacy of what ppfr runs: training, recognition in each mode, gallery identify and verify, checked on
each party's view (tests/privacy.py) for two data sets of the same sizes — constant, structured values
(the worst case for a leak) and random ones."""
import numpy as np
import pytest

import privacy
from ppfr.gallery import Gallery, pair_distances
from ppfr.mpc import LocalSession
from ppfr.gallery import read_record
from storage_util import halves

RNG = np.random.default_rng(11)


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def run_views(work):
    """work(session) under recorded views; the views."""
    with LocalSession() as session:
        session.record_views()
        out = work(session)
        return privacy.views(session), out


def assert_private(run_a, run_b):
    """Both servers' views private, of the same shape for both data sets; the dealer's identical."""
    privacy.assert_dealer_views_equal(run_a["dealer"], run_b["dealer"])
    for name in privacy.SERVERS:
        privacy.assert_server_private(run_a[name])
        privacy.assert_server_private(run_b[name])
        privacy.assert_same_shape(run_a[name], run_b[name])


def test_training_views(tmp_path):
    from ppfr.models.reference import TrainConfig
    from ppfr.models.service import train_mpc

    def train(x, y):
        return lambda session: train_mpc(session, [(x, y)], 4, TrainConfig(epochs=1, batch_size=32))
    constant = (np.full((64, 128), 0.35), np.zeros(64, dtype=np.int64))
    random = (4 * unit(RNG.normal(size=(64, 128))), RNG.integers(0, 4, 64))
    assert_private(run_views(train(*constant))[0], run_views(train(*random))[0])


@pytest.mark.parametrize("reveal", ["label", "probabilities", "logits"])
def test_recognition_views(reveal):
    from ppfr.models.service import predict_mpc

    weights = [RNG.normal(size=(128, 6)) * 0.1, RNG.normal(size=6) * 0.1]

    def recognize(x):
        def work(session):
            job = session.run(_load_model, *[w.shape for w in weights])
            for w in weights:
                session.client.share(w)
            job.result()
            return predict_mpc(session, x, chunk=len(x), reveal=reveal)
        return work
    (a, _), (b, _) = run_views(recognize(np.full((32, 128), 0.35))), run_views(recognize(4 * unit(RNG.normal(size=(32, 128)))))
    assert_private(a, b)
    results = privacy.client_results(a["client"])
    if reveal == "logits":  # the logits reach the client behind a uniform offset per face
        [raw] = results
        assert not privacy.looks_like_data(raw[:, 0])
    if reveal == "label":   # the client receives a label and a band per face, nothing else
        label, band = (r.view(np.int64) for r in results)
        assert label.shape == band.shape == (32,)
        assert set(band) <= {0, 1, 2, 3} and ((label >= -1) & (label < 6)).all()


def _load_model(srv, w_shape, b_shape):
    from ppfr.models.protocols import STATE_KEY

    srv.state[STATE_KEY] = {"weight": srv.receive(), "bias": srv.receive()}


@pytest.mark.parametrize("frac", [20, 13])      # a 64-bit ring, and a 32-bit one (ppfr.gallery.store.ring_bits)
@pytest.mark.parametrize("reveal", ["all", "nearest", "match"])
def test_gallery_views(tmp_path, reveal, frac):
    """Enrol, identify (the gallery is masked row by row), enrol more (only the new rows are opened),
    identify twice more (each batch under a fresh query mask)."""
    def identify(gallery, queries, root):
        def work(session):
            with Gallery(root, session=session, frac_bits=frac) as g:
                g.enroll_many([f"p{i % 5}" for i in range(30)], gallery[:30])
                g.identify(queries[:4], reveal=reveal)
                g.enroll_many([f"p{i % 5}" for i in range(10)], gallery[30:])
                return g.identify(queries, reveal=reveal)
        return work
    constant = (np.full((40, 128), 0.08), np.full((8, 128), 0.08))
    random = (unit(RNG.normal(size=(40, 128))), unit(RNG.normal(size=(8, 128))))
    (a, _), (b, _) = (run_views(identify(*data, tmp_path / name)) for data, name in ((constant, "a"), (random, "b")))
    assert_private(a, b)
    stored = halves(tmp_path / "a", "gallery", read_record(tmp_path / "a").to_json())[0].rows[:, :-1]
    assert not privacy.looks_like_data(stored), "a server's stored half is not uniform"
    if frac == 13:   # results reach the client modulo 2^32 (a share's high word would tell of wrap-arounds)
        assert all((r.view(np.uint64) >> np.uint64(32) <= 1).all() for r in privacy.client_results(a["client"]))


def _removal_then_identify(gallery, queries, root):
    """Enrol 30, identify, remove the last entry (the others keep their rows), identify: the gallery is
    masked anew for the second query, under a fresh row mask."""
    def work(session):
        with Gallery(root, session=session, frac_bits=13) as g:
            g.enroll_many([f"p{i}" for i in range(30)], gallery)
            g.identify(queries, reveal="nearest")
            g.remove("p29")
            return g.identify(queries, reveal="nearest")
    return work


def removal_views(tmp_path):
    constant = (np.full((30, 128), 0.08), np.full((4, 128), 0.08))
    random = (unit(RNG.normal(size=(30, 128))), unit(RNG.normal(size=(4, 128))))
    return [run_views(_removal_then_identify(*data, tmp_path / name))[0]
            for data, name in ((constant, "a"), (random, "b"))]


def test_gallery_views_after_a_removal(tmp_path):
    """The rows kept after a removal are opened again under a fresh mask (test_privacy_mutants plants the
    old one: the harness compares the common prefix of the two maskings)."""
    assert_private(*removal_views(tmp_path))


def test_verify_views():
    def verify(x, y):
        return lambda session: pair_distances(x, y, session=session)
    constant = np.full((16, 128), 0.08)
    random = [unit(RNG.normal(size=(16, 128))) for _ in range(2)]
    (a, _), (b, _) = run_views(verify(constant, constant)), run_views(verify(*random))
    assert_private(a, b)
