"""LFW verification with every distance computed under MPC, against plaintext and a CKKS reference.

    python benchmarks/lfw_verify_mpc.py [--repeats 5] [--roc benchmarks/results/lfw_verify_mpc_roc]

1. The 6,000 pairs of pairs.txt, with the embeddings of the shared LFW cache (benchmarks/CACHE.md); the
   few pair images where HOG found no face are embedded from a fixed box exactly as the plaintext
   benchmark does (benchmarks/lfw_verify_plain.py), so that all 6,000 pairs are scored.
2. "Encrypt": the client secret-shares each distinct embedding once (the servers keep the shares).
   "Match": the servers compute ||a - b||^2 for all 6,000 pairs on the shares (one round of squares, no
   truncation: exact at 40 fractional bits on 20-bit fixed-point vectors) and the client reconstructs.
   Times are medians over --repeats runs; a one-pair run (share two embeddings, match, reconstruct) is
   timed too, which is what the CKKS figures describe.
3. 10-fold accuracy (threshold chosen on nine folds, applied to the tenth) on the MPC distances and on
   float64 distances; the maximum absolute error of the squared distance; the ROC curves of both
   (ROC.png and ROC.svg, matplotlib: the `bench` extra).

Reference (CKKS homomorphic encryption): 436 ms to encrypt an embedding, 2,112 ms to match one pair.
The last line of output is one JSON object with every figure.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from lfw_verify_plain import embed_from_box, ten_fold_accuracy  # noqa: E402  (the plaintext protocol itself)

from plots import roc_plot  # noqa: E402
from publish import publish  # noqa: E402

from ppfr.embed.lfw import default_lfw_dir, images_dir, load_lfw_embeddings, pair_rows, read_pairs  # noqa: E402
from ppfr.gallery import encode_vectors  # noqa: E402
from ppfr.gallery import protocols as P  # noqa: E402
from ppfr.gallery.service import FRAC_BITS  # noqa: E402
from ppfr.mpc import LocalSession  # noqa: E402

DLIB_TOLERANCE = 0.6  # dlib's convention on the Euclidean distance (the JSON's *_0_6 fields)

CKKS_ENCRYPT_MS, CKKS_MATCH_MS = 436.0, 2112.0


def pair_embeddings(lfw_dir):
    """(X: distinct embeddings used by the pairs, rows_a, rows_b, same, fold, images embedded from the box)."""
    full = load_lfw_embeddings(lfw_dir, compute=False)
    pairs = read_pairs(lfw_dir)
    a, b, same, fold = pair_rows(full, pairs)
    missing = sorted({p.path_a for p, i in zip(pairs, a) if i < 0} | {p.path_b for p, i in zip(pairs, b) if i < 0})
    extra = embed_from_box(images_dir(lfw_dir), full, missing)
    index = full.index()
    paths = sorted({p.path_a for p in pairs} | {p.path_b for p in pairs})
    X = np.array([extra[p] if p in extra else full.embeddings[index[p]] for p in paths], dtype=np.float64)
    where = {p: i for i, p in enumerate(paths)}
    ia = np.array([where[p.path_a] for p in pairs])
    ib = np.array([where[p.path_b] for p in pairs])
    return X, ia, ib, same, fold, len(missing)


def roc(distances, same):
    """(false positive rates, true positive rates, AUC) over every threshold."""
    order = np.argsort(distances, kind="stable")
    s = same[order]
    tpr = np.concatenate([[0], np.cumsum(s) / s.sum()])
    fpr = np.concatenate([[0], np.cumsum(~s) / (~s).sum()])
    return fpr, tpr, float(np.trapezoid(tpr, fpr))


def mpc_distances(session, X, ia, ib, repeats: int):
    """Share X once ("encrypt"), then match all pairs `repeats` times; returns distances and timings."""
    xs, _ = encode_vectors(X)
    t = time.perf_counter()
    job = session.run(P.receive_templates, "lfw")
    session.client.share(xs, frac=FRAC_BITS)
    job.result()
    share_seconds = time.perf_counter() - t
    times, before = [], session.stats()["server0"]
    for _ in range(repeats):
        t = time.perf_counter()
        job = session.run(P.template_distances, "lfw", ia, ib)
        sq = session.client.reconstruct()
        job.result()
        times.append(time.perf_counter() - t)
    spent = session.stats()["server0"] - before
    return sq, share_seconds, times, spent


def one_pair(session, X, ia, ib, samples: int = 50):
    """Cold single pairs: share two embeddings, match, reconstruct. Median seconds."""
    times = []
    for k in range(samples):
        pair = np.stack([X[ia[k]], X[ib[k]]])
        xs, _ = encode_vectors(pair)
        t = time.perf_counter()
        job = session.run(P.receive_templates, "one")
        session.client.share(xs, frac=FRAC_BITS)
        job.result()
        job = session.run(P.template_distances, "one", [0], [1])
        session.client.reconstruct()
        job.result()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lfw", default=None, help="LFW folder [default: $PPFR_LFW or ../shared/data/lfw]")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of the 6,000 matches")
    parser.add_argument("--roc", type=Path, default=HERE / "results" / "lfw_verify_mpc_roc",
                        help="where to draw the ROC curves: ROC.png and ROC.svg")
    args = parser.parse_args()
    load_start = os.getloadavg()[0]   # other work on the machine skews the timings: reported
    lfw_dir = Path(args.lfw) if args.lfw else default_lfw_dir()

    X, ia, ib, same, fold, boxed = pair_embeddings(lfw_dir)
    print(f"{len(ia)} pairs over {len(X)} distinct images ({boxed} embedded from the fixed box)")
    plain = ((X[ia] - X[ib]) ** 2).sum(1)

    with LocalSession() as session:
        sq, share_seconds, times, spent = mpc_distances(session, X, ia, ib, args.repeats)
        single = one_pair(session, X, ia, ib)
    match_seconds = statistics.median(times)
    err = np.abs(sq - plain)
    acc_plain, std_plain, thr_plain = ten_fold_accuracy(np.sqrt(plain), same, fold)
    acc_mpc, std_mpc, thr_mpc = ten_fold_accuracy(np.sqrt(np.maximum(sq, 0)), same, fold)
    tol_sq = DLIB_TOLERANCE ** 2  # the squared distances are compared with 0.6 squared
    fixed_plain, fixed_mpc = np.mean((plain <= tol_sq) == same), np.mean((sq <= tol_sq) == same)
    decisions_differ = int(np.sum((sq <= tol_sq) != (plain <= tol_sq)))
    print(f"encrypt (share) {len(X)} embeddings: {share_seconds * 1e3:.1f} ms, "
          f"{share_seconds / len(X) * 1e3:.4f} ms per embedding (CKKS: {CKKS_ENCRYPT_MS:g} ms)")
    print(f"match {len(ia)} pairs under MPC: {match_seconds * 1e3:.1f} ms (median of {args.repeats}), "
          f"{match_seconds / len(ia) * 1e3:.4f} ms per pair (CKKS: {CKKS_MATCH_MS:g} ms); "
          f"{spent.bytes_to['server1'] // args.repeats} B to the other server, {spent.rounds // args.repeats} round(s)")
    print(f"one pair end to end (share 2 embeddings, match, reconstruct): {single * 1e3:.2f} ms")
    print(f"max |squared distance error| {err.max():.2e}; 10-fold accuracy MPC {100 * acc_mpc:.2f} % "
          f"± {100 * std_mpc:.2f}, float64 {100 * acc_plain:.2f} % ± {100 * std_plain:.2f}; "
          f"at 0.6: MPC {100 * fixed_mpc:.2f} %, float64 {100 * fixed_plain:.2f} % ({decisions_differ} decisions differ)")

    fpr_p, tpr_p, auc_p = roc(plain, same)
    fpr_m, tpr_m, auc_m = roc(sq, same)
    roc_files = roc_plot(args.roc, [(f"float64 (AUC {auc_p:.5f})", fpr_p, tpr_p), (f"MPC (AUC {auc_m:.5f})", fpr_m, tpr_m)],
                         f"LFW, {len(ia):,} pairs, dlib embeddings: float64 vs MPC distances")
    print(f"ROC curves written to {', '.join(roc_files)}")

    publish(dict(
        benchmark="lfw_verify_mpc", load_average_1min=[round(load_start, 2), round(os.getloadavg()[0], 2)], pairs=len(ia), distinct_images=len(X), images_from_fixed_box=boxed,
        frac_bits=FRAC_BITS,
        accuracy_10fold_mpc=round(acc_mpc, 5), accuracy_10fold_plaintext=round(acc_plain, 5),
        accuracy_10fold_std_mpc=round(std_mpc, 5), accuracy_identical=acc_mpc == acc_plain,
        thresholds_identical=bool(np.allclose(thr_mpc, thr_plain, atol=1e-4)),
        accuracy_at_0_6_mpc=round(float(fixed_mpc), 5), accuracy_at_0_6_plaintext=round(float(fixed_plain), 5),
        decisions_differing_at_0_6=decisions_differ,
        max_abs_error_squared_distance=float(err.max()), mean_abs_error_squared_distance=float(err.mean()),
        auc_mpc=round(auc_m, 6), auc_plaintext=round(auc_p, 6),
        share_ms_total=round(share_seconds * 1e3, 2), share_ms_per_embedding=round(share_seconds / len(X) * 1e3, 5),
        match_ms_total=round(match_seconds * 1e3, 2), match_ms_per_pair=round(match_seconds / len(ia) * 1e3, 5),
        mpc_ms_total=round((share_seconds + match_seconds) * 1e3, 2), target_ms_total=1000,
        match_ms_runs=[round(t * 1e3, 2) for t in times],
        one_pair_end_to_end_ms=round(single * 1e3, 3),
        bytes_to_other_server=spent.bytes_to["server1"] // args.repeats,
        offline_bytes_per_server=spent.offline_bytes // args.repeats, rounds=spent.rounds // args.repeats,
        ckks_encrypt_ms=CKKS_ENCRYPT_MS, ckks_match_ms_per_pair=CKKS_MATCH_MS,
        speedup_match_per_pair=round(CKKS_MATCH_MS / (match_seconds / len(ia) * 1e3)),
        speedup_one_pair_end_to_end=round((CKKS_MATCH_MS + 2 * CKKS_ENCRYPT_MS) / (single * 1e3)),
        roc_images=roc_files,
    ))


if __name__ == "__main__":
    main()
