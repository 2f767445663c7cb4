"""The softmax classifier on shares (ppfr.models) against numpy float64, its files, its CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from ppfr.embed.store import EmbeddingSet
from ppfr.models.cli import train_mpc as train_mpc_command
from ppfr.models.data import DataError, Preprocessing, load_dataset, split_dataset, stratified_split
from ppfr.models.reference import TrainConfig, initial_weights, label_and_band, softmax_rows, train_plaintext
from ppfr.models.service import predict_mpc, reveal_model, train_mpc
from ppfr.models.store import load_model, model_paths, save_model
from ppfr.mpc import LocalSession
from storage_util import halves

PREP = Preprocessing()


def clusters(classes=8, per_class=16, spread=0.6, seed=0):
    """Gaussian clusters around random centres, preprocessed like real embeddings (unit norm x 4).
    per_class may be a list: unequal classes give the bias real work to do."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), per_class)
    x = rng.normal(size=(classes, 128))[labels] + spread * rng.normal(size=(len(labels), 128))
    return PREP.apply(x), labels


def write_npz(path, x, labels, names=None, embedder="dlib_resnet_v1"):
    names = names if names is not None else [f"person_{i:02d}" for i in range(int(labels.max()) + 1)]
    EmbeddingSet(np.asarray(x, dtype=np.float32), np.asarray(labels), names,
                 [f"{names[y]}/{i}.jpg" for i, y in enumerate(labels)], embedder).save(path)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One MPC training run on a separable problem, kept open for the tests that read it."""
    x, y = clusters(per_class=[4, 8, 12, 16, 20, 24, 28, 16], spread=1.0)
    config = TrainConfig(epochs=4, batch_size=16)
    with LocalSession() as session:
        run = train_mpc(session, [(x[:60], y[:60]), (x[60:], y[60:])], 8, config)  # two data owners
        p = predict_mpc(session, x, reveal="probabilities").probabilities
        # points between the clusters: unsaturated probabilities, where every term of the logits shows
        probe = PREP.apply(np.random.default_rng(9).normal(size=(32, 128))) * 0.5
        p_probe = predict_mpc(session, probe, reveal="probabilities").probabilities
        p_probe_client = predict_mpc(session, probe, reveal="logits").probabilities
        label_probe = predict_mpc(session, np.concatenate([probe, x]), reveal="label")
        w, b = reveal_model(session)
        root = tmp_path_factory.mktemp("weights")
        record = save_model(session, root, [f"c{i}" for i in range(8)], PREP.as_dict(), config.as_dict())
    return dict(x=x, y=y, config=config, run=run, p=p, w=w, b=b, root=root, record=record, probe=probe,
                p_probe=p_probe, p_probe_client=p_probe_client, label_probe=label_probe)


def test_mpc_training_separates_a_separable_problem(trained):
    assert np.mean(trained["p"].argmax(1) == trained["y"]) >= 0.99


def test_mpc_training_follows_the_plaintext_reference(trained):
    """Same initialisation, batch order and hyperparameters: the weights agree up to fixed-point noise."""
    ref = train_plaintext(trained["x"], trained["y"], 8, trained["config"])
    assert np.abs(trained["w"] - ref.weight).max() < 5e-3 * max(1.0, np.abs(ref.weight).max())
    assert np.abs(trained["b"] - ref.bias).max() < 5e-3
    assert np.abs(trained["p"] - ref.predict_proba(trained["x"])).max() < 1e-2


def test_prediction_on_shares_matches_the_plaintext_softmax_of_the_reconstructed_model(trained):
    for x, p in ((trained["x"], trained["p"]), (trained["probe"], trained["p_probe"])):
        want = softmax_rows(x @ trained["w"] + trained["b"])
        assert np.abs(p - want).max() < 1e-3
        assert np.allclose(p.sum(1), 1, atol=1e-3)
    assert trained["p_probe"].max() < 0.9  # the probe really is unsaturated


def test_prediction_with_the_softmax_at_the_client_is_the_float64_softmax_of_the_logits(trained):
    """The servers stop at the logits (on shares, truncated to 2^-16) and the client does the softmax."""
    want = softmax_rows(trained["probe"] @ trained["w"] + trained["b"])
    assert np.abs(trained["p_probe_client"] - want).max() < 1e-4
    assert np.abs(trained["p_probe_client"] - trained["p_probe"]).max() < 1e-3


def test_the_label_on_shares_is_the_plaintext_label_and_band(trained):
    """reveal="label" (the default): the client gets the top class (or -1) and the confidence band only,
    computed on shares; they are the float64 ones of the reconstructed model, except where the top
    probability lies within exp's error of a threshold."""
    got = trained["label_probe"]
    assert got.probabilities is None
    p = softmax_rows(np.concatenate([trained["probe"], trained["x"]]) @ trained["w"] + trained["b"])
    labels, bands = label_and_band(p, got.thresholds)
    near = np.abs(p.max(1)[:, None] - np.array(got.thresholds)).min(1) < 1e-3
    assert not near.all()
    np.testing.assert_array_equal(got.labels[~near], labels[~near])
    np.testing.assert_array_equal(got.bands[~near], bands[~near])
    assert set(bands) >= {0, 1} and (got.labels == -1).any() and (got.labels >= 0).any()


def test_the_run_counts_time_bytes_and_rounds(trained):
    run = trained["run"]
    assert run.batches == 4 * 8  # 128 rows / 16, four epochs
    for server in ("server0", "server1"):
        assert run.stats[server]["bytes_sent"] > 0 and run.stats[server]["rounds"] >= run.batches
    assert set(run.phase_seconds) == {"forward", "softmax", "gradient", "update"}


def test_plaintext_reference_step_is_sgd_on_cross_entropy():
    """One step without momentum equals W - lr * (numerical gradient of mean CE + l2/2 |W|^2)."""
    x, y = clusters(classes=3, per_class=2, seed=1)
    config = TrainConfig(epochs=1, batch_size=len(y), lr=0.3, momentum=0.0, l2=0.01, init_std=0.1)
    w0, b0 = initial_weights(128, 3, config)
    step = train_plaintext(x, y, 3, config)

    def loss(w, b):
        p = softmax_rows(x @ w + b)
        return -np.mean(np.log(p[np.arange(len(y)), y])) + 0.005 * np.sum(w * w)

    def numerical_gradient(f, v):
        grad = np.zeros_like(v)
        for idx in np.ndindex(*v.shape):
            e = np.zeros_like(v)
            e[idx] = 1e-6
            grad[idx] = (f(v + e) - f(v - e)) / 2e-6
        return grad

    assert np.abs(w0).max() > 0.05  # a real starting point, not zeros
    assert np.allclose(step.weight, w0 - 0.3 * numerical_gradient(lambda w: loss(w, b0), w0), atol=1e-7)
    assert np.allclose(step.bias, b0 - 0.3 * numerical_gradient(lambda b: loss(w0, b), b0), atol=1e-7)


def test_model_halves_round_trip_through_disk(trained):
    x = trained["probe"]
    with LocalSession() as session:
        record = load_model(session, trained["root"])
        p = predict_mpc(session, x, reveal="probabilities").probabilities
    assert record["class_names"] == [f"c{i}" for i in range(8)] and record["preprocessing"] == PREP.as_dict()
    assert np.abs(p - softmax_rows(x @ trained["w"] + trained["b"])).max() < 1e-3
    header = halves(trained["root"], "model", record)[0].header
    assert header["rows"] == 8 and header["meta"]["fixed_point"]["frac_bits"] == 16


def test_single_queries_share_one_opening_of_the_weights(trained):
    """After the first small query, a query opens only its own row (W - B was opened for the pool)."""
    with LocalSession() as session:
        load_model(session, trained["root"])
        costs = []
        for row in trained["probe"][:3]:
            before = session.stats()["server0"]
            p = predict_mpc(session, row[None, :], reveal="probabilities").probabilities
            costs.append((session.stats()["server0"] - before).bytes_sent)
            assert np.abs(p - softmax_rows(row[None, :] @ trained["w"] + trained["b"])).max() < 1e-3
    weight_bytes = 128 * 8 * 8  # W - B for 8 classes (a rare truncation retry adds a few bytes, not this)
    assert costs[0] - costs[1] >= weight_bytes and costs[0] - costs[2] >= weight_bytes, costs




# -- data -----------------------------------------------------------------------------------------------------
def test_stratified_split_holds_out_each_class():
    labels = np.repeat(np.arange(5), [2, 5, 10, 11, 40])
    test = stratified_split(labels, 0.2, seed=3)
    for c, n in enumerate([2, 5, 10, 11, 40]):
        k = int(test[labels == c].sum())
        assert k == max(1, min(n - 1, round(0.2 * n)))
    assert not stratified_split(labels, 0.0, 0).any()


def test_several_files_share_one_label_space(tmp_path):
    x, y = clusters(classes=3, per_class=4)
    a = write_npz(tmp_path / "a.npz", x[:6], y[:6], names=["ann", "bob", "cy"])   # ann, bob
    b = write_npz(tmp_path / "b.npz", x[6:], y[6:] - 1, names=["bob", "cy"])         # bob, cy
    data = load_dataset([a, b])
    assert data.class_names == ["ann", "bob", "cy"]
    assert np.array_equal(data.labels, y)
    split = split_dataset(data, 0.25, seed=0)
    assert sum(len(c.labels) for c in split.test) == 3


@pytest.mark.parametrize("case, message", [
    ("one_sample", "at least 2 samples"),
    ("nan", "NaN"),
    ("dimension", "dimension 64, expected 128"),
    ("empty", "no embeddings"),
    ("zero_bytes", "not a readable .npz"),
    ("embedders", "different embedders"),
])
def test_bad_input_gives_a_clear_error(tmp_path, case, message):
    x, y = clusters(classes=3, per_class=4)
    files = [tmp_path / "a.npz"]
    if case == "one_sample":
        write_npz(files[0], x[:9], y[:9])
    elif case == "nan":
        x[5, 7] = np.nan
        write_npz(files[0], x, y)
    elif case == "dimension":
        write_npz(files[0], x[:, :64], y)
    elif case == "empty":
        np.savez(files[0], embeddings=np.zeros((0, 128), np.float32), labels=np.zeros(0, np.int64),
                 class_names=np.array([], dtype=str))
    elif case == "zero_bytes":
        files[0].write_bytes(b"")
    else:
        write_npz(files[0], x, y)
        files.append(write_npz(tmp_path / "b.npz", x, y, embedder="openface"))
    with pytest.raises(DataError, match=message):
        load_dataset(files)
    result = CliRunner().invoke(train_mpc_command, [*map(str, files), "-o", str(tmp_path / "w"), "--quiet"])
    assert result.exit_code != 0 and message in result.output
    assert not (tmp_path / "w").exists()


def test_cli_trains_saves_and_summarises(tmp_path):
    x, y = clusters(classes=6, per_class=10, seed=2)
    path = write_npz(tmp_path / "e.npz", x / 4 * 0.3, y)  # raw-looking scale; preprocessing normalises
    out = tmp_path / "weights"
    result = CliRunner().invoke(train_mpc_command, [str(path), "-o", str(out), "--epochs", "3", "--batch-size",
                                                    "16", "--json", "--quiet", "--loss"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["classes"] == 6 and summary["train_samples"] + summary["test_samples"] == 60
    assert summary["test_samples"] == 12
    assert summary["mpc"]["train_accuracy"] >= 0.99 and summary["mpc"]["test_accuracy"] >= 0.9
    assert abs(summary["mpc"]["test_accuracy"] - summary["plaintext"]["test_accuracy"]) <= 1 / 12 + 1e-9
    assert len(summary["mpc"]["losses"]) == 3 and summary["mpc"]["losses"][-1] < summary["mpc"]["losses"][0]
    # near p = 1 the loss is about 1 - p, which fixed point resolves to ~1e-5 a sample: absolute there
    assert np.allclose(summary["mpc"]["losses"], summary["plaintext"]["losses"], rtol=0.05, atol=1e-3)
    for server in ("server0", "server1"):
        assert summary["mpc"]["stats"][server]["rounds"] > 0
    record = json.loads(model_paths(out)["client"].read_text())
    assert record["id"] == summary["model_id"] and record["names"] == [f"person_{i:02d}" for i in range(6)]
    assert record["embedder"] == "dlib_resnet_v1"
    text = CliRunner().invoke(train_mpc_command, [str(path), "-o", str(out), "--epochs", "1", "--quiet"]).output
    assert "accuracy MPC" in text and "rounds" in text
    again = json.loads(model_paths(out)["client"].read_text())      # -o EXISTING: the next version of it
    assert (again["id"], again["version"]) == (record["id"], record["version"] + 1)


# -- no silent wrong answers ----------------------------------------------------------------------------------
def _range_program(srv, limits):
    from ppfr.models.protocols import _check_range

    w, b = srv.receive(), srv.receive()
    _check_range(srv, w, b, limits)


@pytest.mark.parametrize("norm, bias, common, outside", [
    (5.9, 0.0, 0.0, False), (6.1, 0.0, 0.0, True), (1.0, 7.9, 0.0, False), (1.0, 8.1, 0.0, True),
    (1e6, 0.0, 0.0, True), (1.0, 0.0, 5.9, False), (1.0, 0.0, -6.1, True)])
def test_the_range_check_is_exact_at_its_limits(norm, bias, common, outside):
    """One column of W (less the mean column) of the given norm, one bias (less the mean bias) of the
    given size, one row of W the same `common` value in every class (which the softmax ignores): the bit
    the client learns says whether any reached the limits (6 and 8 here; training uses
    service.range_limits), the class mean of a weight too (the update's truncation bound relies on it)."""
    w = np.zeros((128, 4))
    w[:, 1] = np.random.default_rng(0).normal(size=128)
    w[0, 1] = 0.0
    w[:, 1] *= norm / np.linalg.norm(w[:, 1] - w.mean(axis=1))
    w[0] = common
    b = np.array([0.0, bias, 0.0, 0.0]) * 4 / 3  # less its mean: bias
    with LocalSession() as session:
        job = session.run(_range_program, (6.0, 8.0))
        session.client.share(w)
        session.client.share(b)
        got = bool(session.client.reconstruct()[()])
        session.client.tell("go on", True)
        job.result()
    assert got is outside


def test_a_diverging_training_stops_with_a_clear_error(tmp_path):
    from ppfr.models.service import TrainingOutOfRange

    x, y = clusters()
    with LocalSession() as session, pytest.raises(TrainingOutOfRange, match="diverged in epoch 1"):
        train_mpc(session, [(x, y)], 8, TrainConfig(epochs=3, batch_size=16, lr=1e9))
    path = write_npz(tmp_path / "e.npz", *clusters())
    for extra in ([], ["--no-plaintext"]):
        result = CliRunner().invoke(train_mpc_command, [str(path), "-o", str(tmp_path / "w"), "--lr", "1e9",
                                                        "--epochs", "2", "--quiet", *extra])
        assert result.exit_code == 1 and "diverged in epoch 1" in result.output, result.output
        assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
        assert not model_paths(tmp_path / "w")["client"].exists()   # no model was committed
