"""What each recognition reveal mode tells the client (ppfr.models.reference.revealed), and what that costs the
model: the extraction attacker of benchmarks/extraction.py against a small model trained by the real
reference trainer. The LFW figures themselves are the benchmark's (README, "Threat model")."""
from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest

from conftest import REPO_ROOT
from ppfr.models import reference as R
from ppfr.models.reference import TrainConfig, train_plaintext


@pytest.fixture(scope="module")
def bench():
    """benchmarks/extraction.py, the attacker whose LFW figures the README quotes."""
    name = "extraction_benchmark"
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "benchmarks" / "extraction.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module     # its dataclasses resolve their annotations through the module
    spec.loader.exec_module(module)
    torch = pytest.importorskip("torch")   # the attacker's surrogate fits (the openface extra)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)       # small fits: a second thread only spins on a busy machine
    yield module
    torch.set_num_threads(threads)
    sys.modules.pop(name, None)


# -- what each mode reveals, in the clear (ppfr.models.reference) -------------------------------------------------
THRESHOLDS = R.confidence_thresholds(0.5, R.CONFIDENCE_BANDS)


def test_the_default_thresholds_are_the_naming_threshold_then_the_bands_above_it():
    assert THRESHOLDS == (0.5, 0.8, 0.95)
    assert R.confidence_thresholds(0.9, R.CONFIDENCE_BANDS) == (0.9, 0.95)   # a band below it goes


def test_ties_go_to_the_first_class_and_a_probability_equal_to_a_threshold_reaches_it():
    answer = R.revealed(np.array([[0.0, 0.0], [0.0, 0.0]]), "label", THRESHOLDS)
    assert answer["label"].tolist() == [0, 0] and answer["band"].tolist() == [1, 1]     # p = 0.5 exactly
    answer = R.revealed(np.array([[0.0, 2.0, 2.0, 2.0]]), "label", (0.25, 0.8))
    assert answer["label"].tolist() == [1] and answer["band"].tolist() == [1]          # 3-way tie at p < 0.5
    assert R.revealed(np.full((1, 4), 7.0), "label", (0.25,))["label"].tolist() == [0]  # p = 0.25 exactly


def test_bands_count_the_thresholds_reached_and_zero_means_unknown():
    p_top = np.array([0.6, 0.9, 0.99, 0.3])
    rest = (1 - p_top) / 2
    z = np.log(np.stack([rest, p_top, rest], axis=1))
    answer = R.revealed(z, "label", THRESHOLDS)
    assert answer["label"].tolist() == [1, 1, 1, -1] and answer["band"].tolist() == [1, 2, 3, 0]


def test_all_unknown_reveals_nothing_but_unknown():
    z = np.random.default_rng(0).normal(scale=0.01, size=(50, 10))
    answer = R.revealed(z, "label", THRESHOLDS)
    assert set(answer) == {"label", "band"}
    assert (answer["label"] == -1).all() and (answer["band"] == 0).all()


def test_logit_differences_hide_the_offset_and_sit_on_the_fixed_point_grid():
    rng = np.random.default_rng(1)
    z = rng.normal(scale=5, size=(20, 7))
    d = R.revealed(z, "logits", THRESHOLDS)["differences"]
    shifted = R.revealed(z + rng.normal(scale=100, size=(20, 1)), "logits", THRESHOLDS)["differences"]
    assert np.abs(d - shifted).max() <= 2 ** -16        # an offset per face changes nothing but rounding
    assert (d[:, 0] == 0).all() and np.abs(d - (z - z[:, :1])).max() <= 2 ** -17
    assert np.array_equal(d * 2 ** 16, np.round(d * 2 ** 16))


def test_probabilities_are_rounded_to_the_grid_and_tiny_ones_read_as_zero():
    p = R.revealed(np.array([[0.0, -20.0, 3.0], [1.0, 1.0, 1.0]]), "probabilities", THRESHOLDS)["probabilities"]
    assert np.array_equal(p * 2 ** 16, np.round(p * 2 ** 16))
    assert p[0, 1] == 0 and abs(p[1].sum() - 1) <= 3 * 2 ** -17
    with pytest.raises(ValueError, match="reveal is one of"):
        R.revealed(np.zeros((1, 3)), "everything", THRESHOLDS)


# -- extraction on a small model --------------------------------------------------------------------------------
DIM, CLASSES = 16, 10


@pytest.fixture(scope="module")
def victim():
    """A softmax model trained by the reference trainer on overlapping synthetic clusters on the sphere of
    radius 4 (as preprocessing leaves dlib embeddings), held-out probes, and an attacker's pool of faces
    of the same people."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(CLASSES, DIM))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)

    def sample(n):
        y = rng.integers(0, CLASSES, n)
        v = centres[y] + 1.2 * rng.normal(size=(n, DIM)) / np.sqrt(DIM)
        return 4 * v / np.linalg.norm(v, axis=1, keepdims=True), y

    (x, y), (probes, _), (pool, _) = sample(40 * CLASSES), sample(500), sample(400)
    return train_plaintext(x, y, CLASSES, TrainConfig()), probes, pool


def _fidelity(bench, model, mode, budgets, probes, pool):
    oracle = bench.Oracle(model.weight, model.bias, mode)
    curve = bench.attack(oracle, bench.Attacker(pool, CLASSES, seed=0, fit_iterations=100), budgets, probes, past_target=10 ** 9)
    assert [p["queries"] for p in curve] == list(budgets)            # never more queries than the budget
    return [p["fidelity"] for p in curve]


def test_logit_differences_give_the_model_away_with_d_plus_1_queries_and_labels_do_not(bench, victim):
    model, probes, pool = victim
    budgets = (DIM + 1, 2 * (DIM + 1))
    logits = _fidelity(bench, model, "logits", budgets, probes, pool)
    label = _fidelity(bench, model, "label", budgets, probes, pool)
    assert min(logits) >= 0.99, logits
    assert label[-1] <= logits[-1] - 0.1, (label, logits)


def test_the_label_attacker_is_a_real_one_it_gets_there_with_many_more_queries(bench, victim):
    model, probes, pool = victim
    few, many = _fidelity(bench, model, "label", (2 * (DIM + 1), 1000), probes, pool)
    assert many >= 0.93 and many >= few + 0.1, (few, many)
