"""Model extraction: how many queries a client needs to steal the recognition model in each reveal mode.

    python benchmarks/extraction.py [--budget 100000] [--modes label,probabilities,logits]
                                    [--pools strangers,enrolled] [--seed 0] [--target 0.99]

The victim: the softmax classifier of LFW people with >= 10 images (158 people), trained by the float64
reference trainer with the default configuration on 80 % of each person's images (the same algorithm,
initialisation and batch order as training on shares, whose model matches it: benchmarks/train_mpc.py).
The oracle answers each query x (a preprocessed embedding) with exactly what the client receives in the
mode, ppfr.models.reference.revealed(xW + b): the MPC outputs are these functions of the logits (label:
the top class or unknown below recognize.threshold, 0.5, and a band among the thresholds 0.5, 0.8, 0.95).

The attacker, written once for every mode (Attacker below), holds public face embeddings (its pool):
  - strangers: the LFW images of everyone outside the 158 (about 8,900 images of 5,600 people);
  - enrolled: those plus the 80 % training images of the 158 people (photos of the enrolled people,
    though not the ones the fidelity is measured on).
It asks random probes near its pool's faces (unit vectors x 4, as preprocessing makes them), and, when
an answer names only a label, adaptive ones too: bisection along the great circle between two answered
points whose answers differ, which closes in on a class boundary or a confidence band's edge. It then
fits a surrogate softmax model (128 x 158 and a bias) to whatever the oracle revealed:
  - logit differences: least squares on [x, 1], an exact linear solve once it has 129 queries;
  - probabilities: cross-entropy against the revealed probabilities (L-BFGS);
  - label and band: every answer is an interval for the surrogate's top probability (band k: between
    the k-th and the next band edge; unknown: every class below the threshold), fitted as squared hinge
    penalties on log-probabilities (L-BFGS), which also pins the label as the top class.
Each refit starts from the last one.
Each iterative refit uses at most --fit-rows answers (a fresh random sample each time, 20,000 by
default): a compute cap of this benchmark, so the label and probability figures are what an attacker
with this much compute reaches, and one with more could do better.

Fidelity is top-1 agreement between surrogate and victim on the held-out 20 % of the 158 people's images
(real faces neither used to train the victim nor in any pool). The benchmark reports the fidelity after
each budget of a schedule (powers 1, 2, 5 of ten, plus 129 and 258) up to --budget, and the first budget
that reaches --target. The last line of output is one JSON object, kept in
benchmarks/results/extraction.json (benchmarks/publish.py).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")   # small products; BLAS threads only add overhead

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from ppfr.models.reference import CONFIDENCE_BANDS, REVEALS, check_reveal, confidence_thresholds, revealed  # noqa: E402
from ppfr.config import section  # noqa: E402
from publish import publish  # noqa: E402

POOLS = ("strangers", "enrolled")
UNKNOWN_LABEL = -1
# recognize.threshold and recognize.confidence_bands: 0.5, then 0.8 and 0.95
DEFAULT_THRESHOLDS = confidence_thresholds(section("recognize").get("threshold", 0.5),
                                           section("recognize").get("confidence_bands", CONFIDENCE_BANDS))


# -- the victim, behind the reveal function of one mode -----------------------------------------------------
@dataclass
class Oracle:
    """Answers queries (rows of preprocessed embeddings) as the client would receive them in `mode`,
    and counts them."""

    weight: np.ndarray
    bias: np.ndarray
    mode: str
    thresholds: tuple = DEFAULT_THRESHOLDS
    queries: int = 0

    def __post_init__(self):
        check_reveal(self.mode)

    def __call__(self, x: np.ndarray) -> dict:
        self.queries += len(x)
        return revealed(x @ self.weight + self.bias, self.mode, self.thresholds)

    def top1(self, x: np.ndarray) -> np.ndarray:
        """The victim's own top class (for measuring fidelity; never given to the attacker)."""
        return np.argmax(x @ self.weight + self.bias, axis=1)


# -- surrogate fits, one per kind of answer -------------------------------------------------------------------
def _augment(x: np.ndarray) -> np.ndarray:
    return np.hstack([x, np.ones((len(x), 1))])


def fit_differences(x: np.ndarray, differences: np.ndarray) -> np.ndarray:
    """Least squares for [W | b] (D+1, C) from z_j - z_0: exact (to the 2^-16 rounding) with D+1 queries in
    general position, the minimum-norm solution below that."""
    theta, *_ = np.linalg.lstsq(_augment(x), differences, rcond=None)
    return theta


def _lbfgs(x: np.ndarray, classes: int, loss_of_logits, init: np.ndarray | None, iterations: int,
           l2: float = 1e-6) -> np.ndarray:
    """Minimise loss_of_logits([x, 1] theta) + l2 |W|^2 over theta (D+1, C) with torch's L-BFGS."""
    import torch

    a = torch.from_numpy(_augment(x))
    start = np.zeros((x.shape[1] + 1, classes)) if init is None else init
    theta = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([theta], lr=1, max_iter=iterations, history_size=20, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-9, tolerance_change=1e-12)

    def closure():
        opt.zero_grad()
        loss = loss_of_logits(a @ theta) + l2 * (theta[:-1] ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return theta.detach().numpy()


def fit_probabilities(x, probabilities, init=None, iterations: int = 300) -> np.ndarray:
    """Cross-entropy of the surrogate's softmax against the revealed (rounded) probabilities."""
    import torch

    target = torch.from_numpy(probabilities)
    return _lbfgs(x, probabilities.shape[1],
                  lambda z: -(target * torch.log_softmax(z, dim=1)).sum(dim=1).mean(), init, iterations)


def fit_labels(x, labels, bands, classes: int, thresholds, init=None, iterations: int = 300) -> np.ndarray:
    """Interval-censored fit: answer (y, k) says the surrogate's p_y lies in [t_k, t_k+1) (t_1 the naming
    threshold, the last upper edge 1); answer -1 says every p_j < t_1. Each violated bound costs its
    squared distance in log-probability."""
    import torch

    lower = np.log(np.array(thresholds))
    upper = np.log(np.array([*thresholds[1:], 1.0]))
    known = labels != UNKNOWN_LABEL
    rows = torch.from_numpy(np.flatnonzero(known))
    cls = torch.from_numpy(labels[known])
    lo = torch.from_numpy(lower[bands[known] - 1])
    hi = torch.from_numpy(upper[bands[known] - 1])
    unknown = torch.from_numpy(np.flatnonzero(~known))
    log_t = float(np.log(thresholds[0])) if thresholds[0] > 0 else -np.inf
    n = len(labels)

    def loss(z):
        logp = torch.log_softmax(z, dim=1)
        lp = logp[rows, cls]
        out = (torch.relu(lo - lp) ** 2 + torch.relu(lp - hi) ** 2).sum()
        # only the top class can pass a threshold >= 0.5; below that the top is penalised first
        out = out + (torch.relu(logp[unknown].max(dim=1).values - log_t) ** 2).sum()
        return out / n

    return _lbfgs(x, classes, loss, init, iterations)


# -- the attacker ------------------------------------------------------------------------------------------------
@dataclass
class Attacker:
    """One attacker for every mode: random probes near its pool of faces, plus (for label answers)
    bisection towards the edges of the answer regions; a surrogate refitted after each budget.

    pool: the attacker's public embeddings, preprocessed (unit norm x scale). noise: the probes' angular
    perturbation, up to this many radians. bisection_steps: queries per boundary search (each halves the
    arc). random_share: the share of a budget spent on random probes once adaptive ones are possible.
    fit_iterations: L-BFGS iterations per refit (each warm-started from the last); fit_rows: the most
    answers an iterative refit uses (a fresh random sample each time), which bounds its cost."""

    pool: np.ndarray
    classes: int
    thresholds: tuple = DEFAULT_THRESHOLDS
    seed: int = 0
    noise: float = 0.5
    bisection_steps: int = 8
    random_share: float = 0.5
    fit_iterations: int = 100
    fit_rows: int = 20_000
    x: np.ndarray = field(init=False)
    answers: dict = field(init=False, default_factory=dict)
    theta: np.ndarray | None = field(init=False, default=None)

    def __post_init__(self):
        self.rng = np.random.default_rng([self.seed, 7])
        self.scale = float(np.linalg.norm(self.pool[0]))
        self.x = np.zeros((0, self.pool.shape[1]))

    # queries
    def _sphere(self, v: np.ndarray) -> np.ndarray:
        return self.scale * v / np.linalg.norm(v, axis=1, keepdims=True)

    def random_probes(self, n: int) -> np.ndarray:
        """Pool faces, each turned by a random angle of up to `noise` radians in a random direction."""
        base = self.pool[self.rng.integers(0, len(self.pool), n)] / self.scale
        direction = self.rng.normal(size=base.shape)
        direction -= np.sum(direction * base, axis=1, keepdims=True) * base
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        angle = self.rng.uniform(0, self.noise, size=(n, 1))
        return self._sphere(np.cos(angle) * base + np.sin(angle) * direction)

    def _keys(self, answers: dict) -> np.ndarray | None:
        """What a bisection tells apart: (label, band) when only those are revealed."""
        if "label" not in answers:
            return None
        return answers["label"] * (len(self.thresholds) + 1) + answers["band"]

    def _record(self, x: np.ndarray, answers: dict) -> None:
        self.x = np.vstack([self.x, x])
        for k, v in answers.items():
            self.answers[k] = np.concatenate([self.answers[k], v]) if k in self.answers else v

    def _pairs(self, m: int):
        """m pairs of answered points with different answers, each anchor with the nearest of a sample of
        candidates, anchors drawn among points with a known label."""
        keys = self._keys(self.answers)
        anchors = np.flatnonzero(self.answers["label"] != UNKNOWN_LABEL)
        if len(anchors) == 0 or len(np.unique(keys)) < 2:
            return None
        a = self.rng.choice(anchors, m)
        cand = self.rng.integers(0, len(self.x), (m, 64))
        dist = np.linalg.norm(self.x[cand] - self.x[a][:, None, :], axis=2)
        dist[keys[cand] == keys[a][:, None]] = np.inf
        best = cand[np.arange(m), np.argmin(dist, axis=1)]
        ok = np.isfinite(dist.min(axis=1))
        return a[ok], best[ok]

    def bisect(self, oracle: Oracle, m: int) -> int:
        """m boundary searches of bisection_steps queries each, all searches advancing together. Returns
        the queries spent."""
        pairs = self._pairs(m)
        if pairs is None or len(pairs[0]) == 0:
            return 0
        a, b = self.x[pairs[0]], self.x[pairs[1]]
        key_a = self._keys(self.answers)[pairs[0]]
        for _ in range(self.bisection_steps):
            mid = self._sphere(a + b)
            answers = oracle(mid)
            self._record(mid, answers)
            same = (self._keys(answers) == key_a)[:, None]
            a, b = np.where(same, mid, a), np.where(same, b, mid)
        return len(key_a) * self.bisection_steps

    def query(self, oracle: Oracle, budget: int) -> None:
        """Spend queries until `budget` have been asked in all."""
        need = budget - len(self.x)
        if need <= 0:
            return
        if "label" in self.answers and need >= 2 * self.bisection_steps:
            self.bisect(oracle, int(need * (1 - self.random_share)) // self.bisection_steps)
        rest = budget - len(self.x)
        if rest > 0:
            probes = self.random_probes(rest)
            self._record(probes, oracle(probes))

    # surrogate
    def fit(self) -> np.ndarray:
        """Refit the surrogate [W | b] (warm-started from the last fit) on every answer so far, or for the
        iterative fits on a fresh random `fit_rows` of them (this benchmark's compute cap)."""
        ans = self.answers
        if "differences" in ans:
            self.theta = fit_differences(self.x, ans["differences"])
            return self.theta
        rows = np.arange(len(self.x))
        if len(rows) > self.fit_rows:
            rows = np.sort(self.rng.choice(rows, self.fit_rows, replace=False))
        if "probabilities" in ans:
            self.theta = fit_probabilities(self.x[rows], ans["probabilities"][rows], self.theta,
                                           self.fit_iterations)
        else:
            self.theta = fit_labels(self.x[rows], ans["label"][rows], ans["band"][rows], self.classes,
                                    self.thresholds, self.theta, self.fit_iterations)
        return self.theta

    def top1(self, x: np.ndarray) -> np.ndarray:
        return np.argmax(_augment(x) @ self.theta, axis=1)


def schedule(limit: int, dim: int) -> list[int]:
    """Budgets 1, 2, 5 x 10^k from 10 up to `limit`, plus D+1 and 2(D+1) (where the linear solve becomes
    exact), and `limit` itself."""
    steps = {m * 10 ** k for k in range(1, 9) for m in (1, 2, 5)} | {dim + 1, 2 * (dim + 1), limit}
    return sorted(s for s in steps if s <= limit)


def attack(oracle: Oracle, attacker: Attacker, budgets, probes: np.ndarray, target: float = 0.99,
           past_target: int = 10, log=None) -> list[dict]:
    """The fidelity curve: after each budget, the share of `probes` on which surrogate and victim agree.
    Stops once the budget is `past_target` times the one that first reached `target`."""
    truth = oracle.top1(probes)
    curve = []
    for budget in budgets:
        reached = queries_to(curve, target)
        if reached is not None and budget > past_target * reached:
            break
        t = time.perf_counter()
        attacker.query(oracle, budget)
        attacker.fit()
        point = {"queries": oracle.queries, "fidelity": float(np.mean(attacker.top1(probes) == truth)),
                 "seconds": round(time.perf_counter() - t, 2)}
        curve.append(point)
        if log:
            log(f"  {oracle.mode:13s} {point['queries']:>7d} queries: fidelity {point['fidelity']:.4f} "
                f"({point['seconds']} s)")
    return curve


def queries_to(curve: list[dict], target: float) -> int | None:
    """The first budget of the curve at which fidelity reached the target (None: not within the budget)."""
    return next((p["queries"] for p in curve if p["fidelity"] >= target), None)


# -- LFW ------------------------------------------------------------------------------------------------------
def lfw_victim(seed: int):
    """(victim weight, bias, preprocessed held-out probes, train x, stranger x, classes, test accuracy)."""
    from open_set import lfw_split  # the benchmarks' common LFW >= 10 split

    from ppfr.models.data import Preprocessing
    from ppfr.models.reference import TrainConfig, train_plaintext

    x_train, y_train, x_test, y_test, x_strangers, names = lfw_split(seed)
    prep = Preprocessing()
    model = train_plaintext(prep.apply(x_train), y_train, len(names), TrainConfig.from_config(seed=seed))
    probes = prep.apply(x_test)
    accuracy = float(np.mean(model.predict_proba(probes).argmax(1) == y_test))
    return model.weight, model.bias, probes, prep.apply(x_train), prep.apply(x_strangers), len(names), accuracy


def run_attack(pool_name, pool, mode, weight, bias, probes, budgets, args) -> list[dict]:
    """One mode's fidelity curve against the victim, for an attacker with this pool of faces."""
    import torch
    torch.set_num_threads(args.threads)   # more threads than free cores make torch spin: 8x slower here
    attacker = Attacker(pool, weight.shape[1], seed=args.seed, fit_rows=args.fit_rows,
                        fit_iterations=args.fit_iterations)
    log = (lambda s: print(f"[{pool_name}] {s.strip()}", file=sys.stderr, flush=True))
    return attack(Oracle(weight, bias, mode), attacker, budgets, probes, args.target, log=log)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", type=int, default=100_000, help="the most queries per mode (default 100,000)")
    ap.add_argument("--modes", default=",".join(REVEALS), help=f"comma-separated, of {', '.join(REVEALS)}")
    ap.add_argument("--pools", default=",".join(POOLS), help="the attacker's faces: strangers, enrolled")
    ap.add_argument("--target", type=float, default=0.99, help="the fidelity to reach (default 0.99)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fit-rows", type=int, default=Attacker.fit_rows,
                    help="answers per iterative refit, a random sample (default %(default)s: the compute cap)")
    ap.add_argument("--fit-iterations", type=int, default=Attacker.fit_iterations,
                    help="L-BFGS iterations per refit (default %(default)s)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per attack (default 1)")
    ap.add_argument("--workers", type=int, default=2, help="attacks run at once, one process each (default 2)")
    args = ap.parse_args(argv)
    modes = [check_reveal(m) for m in args.modes.split(",")]
    pools = args.pools.split(",")
    if set(pools) - set(POOLS):
        ap.error(f"--pools takes {', '.join(POOLS)}")

    log = (lambda s: print(s, file=sys.stderr, flush=True))
    weight, bias, probes, x_train, x_strangers, classes, accuracy = lfw_victim(args.seed)
    dim = weight.shape[0]
    budgets = schedule(args.budget, dim)
    log(f"victim: LFW >= 10, {classes} people, test accuracy {accuracy:.4f}; {len(probes)} probes; "
        f"budgets {budgets}")
    load_before = os.getloadavg()[0]
    faces = {"strangers": x_strangers, "enrolled": np.vstack([x_strangers, x_train])}
    tasks = [(pool, mode) for mode in modes for pool in pools]   # the long label attacks first
    common = (weight, bias, probes, budgets, args)
    with ProcessPoolExecutor(max_workers=args.workers) as executor:   # the attacks are independent
        futures = [executor.submit(run_attack, pool, faces[pool], mode, *common) for pool, mode in tasks]
        done = [f.result() for f in futures]
    results = {pool: {} for pool in pools}
    for (pool, mode), curve in zip(tasks, done):
        results[pool][mode] = {"queries_to_target": queries_to(curve, args.target),
                               "best_fidelity": max(p["fidelity"] for p in curve), "curve": curve}
    summary = {
        "benchmark": "extraction", "victim": {"dataset": "lfw_min10", "classes": classes, "dim": dim,
                                              "test_accuracy": accuracy, "trainer": "float64 reference"},
        "probes": len(probes), "target_fidelity": args.target, "budget": args.budget,
        "thresholds": list(DEFAULT_THRESHOLDS),
        "attacker": {"pools": {"strangers": len(x_strangers), "enrolled": len(x_strangers) + len(x_train)},
                     "fit_rows": args.fit_rows, "fit_iterations": args.fit_iterations},
        "queries_to_target": {p: {m: r["queries_to_target"] for m, r in by_mode.items()}
                              for p, by_mode in results.items()},
        "results": results, "load_before": load_before,
    }
    publish(summary)
    return summary


if __name__ == "__main__":
    main()
