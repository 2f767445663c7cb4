"""1:N identification against galleries of 10k, 100k and 1M entries: LFW embeddings plus synthetic identities.

    python benchmarks/identify_scaling.py [--sizes 10000,100000,1000000] [--queries 5] [--comparisons both]

Data. Probes: one image of each LFW person with at least two images (benchmarks/cache, see CACHE.md). The
gallery: every other LFW image, then synthetic identities up to the size (below it, a random subset of
those images). A synthetic identity is a *look-alike*: an LFW gallery vector plus Gaussian noise of norm
--spread (0.45: about the distance between two images of one person, under dlib's 0.6), so that it
competes with the true match for the probes of that person; this tests the argmin among close rivals
(rank-1 may drop, and must equal float64's on the same gallery). Random unit vectors would lie ~1.4 from
every probe and test only the cost, so they are not used.

Each size: (1) enrol the gallery in a session of processes (one per party, so that memory is each
server's own), shared 65,536 rows per message, one atomic change; (2) a fresh session loads both halves,
masks the gallery (F = G - B opened once, ppfr.mpc.reuse.MaskedRows) and answers single queries in the
'nearest' mode, alternating the comparison methods query by query (A/B in one run); per query the median
time, rounds and bytes per server online and from the dealer; (3) enrols one more person into the
loaded, masked gallery (only its row is opened); (4) peak resident memory of each server process
(VmHWM: the whole session, load included; with --parties threads, of the one process that holds every
party, and the run is published apart, as identify_scaling_threads.json). Rank-1: the MPC answers are checked against float64 for the
timed probes (in the 'nearest' mode by each method and in the 'all' mode, where the client takes the
argmin of every distance: the cost of the masked cross terms alone), and for all probes float64 on the original vectors is compared with the exact computation
on the fixed-point vectors that the MPC computes exactly (the two differ only where rounding to 2^-13
swaps two nearly equal distances: the error bound is printed).

Galleries run at 13 fractional bits: a 32-bit ring (ppfr.gallery.store.ring_bits). The last line of
output is one JSON object with every figure.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from publish import publish  # noqa: E402

from ppfr.gallery import Gallery, store  # noqa: E402
from ppfr.mpc import open_session, protocols  # noqa: E402

OUT = HERE / "out"
FRAC = 13
DIM = 128


def lfw(synthetic: bool, rng):
    """(embeddings, person of each row): the LFW cache, or stand-ins of its shape for a dry run."""
    if synthetic:
        people = rng.normal(size=(5749, DIM))
        people *= 0.9 / np.linalg.norm(people, axis=1, keepdims=True)
        labels = np.concatenate([np.arange(5749), rng.integers(0, 1680, 13233 - 5749)])
        return people[labels] + rng.normal(size=(len(labels), DIM)) * 0.3 / np.sqrt(DIM), labels
    from ppfr.embed.lfw import load_lfw_embeddings
    full = load_lfw_embeddings(compute=False)
    return np.asarray(full.embeddings, np.float64), np.asarray(full.labels)


def split(labels, rng):
    """(probe rows, gallery rows): one random image of each person with at least two is a probe."""
    probes = []
    for person in np.flatnonzero(np.bincount(labels) >= 2):
        probes.append(rng.choice(np.flatnonzero(labels == person)))
    probes = np.sort(np.array(probes))
    return probes, np.setdiff1d(np.arange(len(labels)), probes)


def build_gallery(emb, labels, base, size, spread, rng):
    """(vectors, person per row (-1: synthetic)) of a gallery of `size` rows."""
    if size <= len(base):
        rows = np.sort(rng.choice(base, size, replace=False))
        return emb[rows], labels[rows]
    extra = size - len(base)
    vecs = np.empty((size, DIM))
    vecs[:len(base)] = emb[base]
    for lo in range(0, extra, 1 << 16):    # in chunks: a million rows of float64 noise at once is 1 GB more
        n = min(1 << 16, extra - lo)
        vecs[len(base) + lo:len(base) + lo + n] = emb[rng.choice(base, n)] + rng.normal(size=(n, DIM)) * spread / np.sqrt(DIM)
    return vecs, np.concatenate([labels[base], np.full(extra, -1)])


def nearest_float64(probes, gallery, chunk=1 << 13):
    """(row, squared distance, squared distance of the second nearest) of each probe, float64, in chunks."""
    rows = np.zeros(len(probes), np.int64)
    best = np.full((len(probes), 2), np.inf)
    pn, at = (probes ** 2).sum(1), np.arange(len(probes))
    for lo in range(0, len(gallery), chunk):
        g = gallery[lo:lo + chunk]
        d = pn[:, None] - 2 * probes @ g.T + (g ** 2).sum(1)[None]
        first = d.argmin(1)
        v1 = d[at, first]
        d[at, first] = np.inf
        v2 = d.min(1)
        better = v1 < best[:, 0]
        best[:, 1] = np.where(better, np.minimum(best[:, 0], v2), np.minimum(best[:, 1], v1))
        rows = np.where(better, lo + first, rows)
        best[:, 0] = np.where(better, v1, best[:, 0])
    return rows, best[:, 0], best[:, 1]


def encoded(x):
    """The fixed-point vectors the MPC computes with exactly (float64 holds their products exactly:
    multiples of 2^-26 below 2^9)."""
    return np.rint(x * 2.0**FRAC) / 2.0**FRAC


def peak_mb(srv):
    """Run by each server: its process's peak resident memory so far, MB (Linux's VmHWM; not ru_maxrss,
    which a spawned process inherits from the parent it was forked from)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024


def enrol(root, vecs, parties):
    shutil.rmtree(root, ignore_errors=True)
    with open_session(parties) as session, Gallery(root, frac_bits=FRAC, session=session) as g:
        t = time.perf_counter()
        g.enroll_many([f"row{i}" for i in range(len(vecs))], vecs, progress=True)
        seconds = time.perf_counter() - t
        peaks = session.run(peak_mb).result()
    return seconds, peaks


def stats_of(session):
    s = session.stats()
    return {name: s[name].copy() for name in ("server0", "server1")}


def query_once(g, session, probe, method, reveal="nearest"):
    """One single query by `method`: (answer, seconds, each server's stats spent)."""
    session.run(protocols.use_comparisons, method).result()
    before = stats_of(session)
    t = time.perf_counter()
    [hit] = g.identify(probe[None], reveal=reveal)
    seconds = time.perf_counter() - t
    after = stats_of(session)
    return hit, seconds, {k: after[k] - before[k] for k in after}


def serve(root, vecs, probes, methods, queries, parties):
    """Load, mask, time single queries (methods alternating), enrol one more row; figures and answers."""
    out = {"methods": {m: {"seconds": [], "spent": None} for m in methods}}
    answers = {}
    with open_session(parties) as session, Gallery(root, frac_bits=FRAC, session=session, batch=1) as g:
        before = stats_of(session)
        t = time.perf_counter()
        g.identify(probes[:1], reveal="nearest")                 # load, mask (open F), first query
        out["load_mask_first_query_seconds"] = round(time.perf_counter() - t, 2)
        first = stats_of(session)
        out["load_mask_bytes_to_peer"] = (first["server0"] - before["server0"]).bytes_to["server1"]
        for i in range(queries):
            for method in (methods if i % 2 == 0 else methods[::-1]):
                hit, seconds, spent = query_once(g, session, probes[i], method)
                out["methods"][method]["seconds"].append(seconds)
                out["methods"][method]["spent"] = spent
                answers.setdefault(i, set()).add(hit.entry)
        # the 'all' mode: the cross terms and every distance to the client, no argmin (what MaskedRows costs)
        out["all_mode"] = {"seconds": [], "spent": None}
        for i in range(queries):
            hit, seconds, spent = query_once(g, session, probes[i], methods[0], "all")
            out["all_mode"]["seconds"].append(seconds)
            out["all_mode"]["spent"] = spent
            answers[i].add(hit.entry)
        t = time.perf_counter()
        before = stats_of(session)
        g.enroll("newcomer", vecs[:1] * 0.99)                     # into the loaded, masked gallery
        out["incremental_enrol_seconds"] = round(time.perf_counter() - t, 2)
        out["incremental_enrol_bytes_to_peer"] = (stats_of(session)["server0"] - before["server0"]).bytes_to["server1"]
        [hit] = g.identify(vecs[:1] * 0.99, reveal="nearest")
        out["incremental_enrol_found"] = hit.name == "newcomer"
        out["peak_mb_per_server"] = [round(v) for v in session.run(peak_mb).result()]
    return out, answers


def figures(method_runs: dict) -> dict:
    out = {}
    for method, run in method_runs.items():
        s0, s1 = run["spent"]["server0"], run["spent"]["server1"]
        out[method] = {"median_seconds": round(statistics.median(run["seconds"]), 3),
                       "seconds": [round(v, 3) for v in run["seconds"]],
                       "rounds": s0.rounds,
                       "online_bytes_per_server": max(s0.bytes_sent, s1.bytes_sent),
                       "offline_bytes_per_server": max(s0.offline_bytes, s1.offline_bytes)}
    return out


def one_size(size, emb, labels, probes, base, args, rng) -> dict:
    vecs, persons = build_gallery(emb, labels, base, size, args.spread, rng)
    norms = np.linalg.norm(vecs, axis=1)
    root = OUT / f"identify_scaling_{size}"
    enrol_seconds, enrol_peaks = enrol(root, vecs, args.parties)
    print(f"{size:,}: enrolled in {enrol_seconds:.1f} s, peak {[round(p) for p in enrol_peaks]} MB per server")
    timed = rng.choice(len(probes), args.queries, replace=False)
    served, answers = serve(root, vecs, emb[probes[timed]], args.methods, args.queries, args.parties)
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    m = figures(served["methods"])
    served["all_mode"] = figures({"all": served["all_mode"]})["all"]
    print(f"{size:,}: " + "; ".join(f"{k} {v['median_seconds']} s, {v['rounds']} rounds, "
                                    f"{v['online_bytes_per_server'] / 1e6:.1f} MB online, "
                                    f"{v['offline_bytes_per_server'] / 1e6:.1f} MB offline" for k, v in m.items())
          + f"; 'all' mode (no argmin) {served['all_mode']['median_seconds']} s, {served['all_mode']['rounds']} rounds"
          + f"; load, mask and a first query {served['load_mask_first_query_seconds']} s; peak "
          f"{served['peak_mb_per_server']} MB per server", flush=True)

    rows64, d1, d2 = nearest_float64(emb[probes], vecs)
    rows_fixed, _, _ = nearest_float64(encoded(emb[probes]), encoded(vecs))
    mpc_equal = all(answers[i] == {int(rows_fixed[timed[i]])} for i in range(args.queries))
    mpc_equal_float64 = all(answers[i] == {int(rows64[timed[i]])} for i in range(args.queries))
    true_person = labels[probes]
    rank1_64 = float(np.mean(persons[rows64] == true_person))
    rank1_fixed = float(np.mean(persons[rows_fixed] == true_person))
    # rounding each coordinate to 2^-14 moves a squared distance by at most 2 |q - g| sqrt(d) 2^-13 + d 2^-26
    bound = 2 * np.sqrt(d1) * np.sqrt(DIM) * 2.0**-FRAC + DIM * 2.0**-(2 * FRAC)
    row = {"entries": size, "lfw_rows": int(min(size, len(base))), "synthetic_rows": int(max(0, size - len(base))),
           "max_norm": round(float(norms.max()), 3), "enrol_seconds": round(enrol_seconds, 1),
           "enrol_peak_mb_per_server": [round(p) for p in enrol_peaks], **served,
           "methods": m,
           "rank1": {"probes": len(probes), "float64": round(rank1_64, 5), "fixed_point_exact": round(rank1_fixed, 5),
                     "probes_same_nearest_row": int((rows64 == rows_fixed).sum()),
                     "probes_same_rank1_person": int((persons[rows64] == persons[rows_fixed]).sum()),
                     "probes_with_margin_below_error_bound": int(((d2 - d1) < 2 * bound).sum()),
                     "mpc_timed_probes": args.queries, "mpc_equals_fixed_point": mpc_equal,
                     "mpc_equals_float64": mpc_equal_float64}}
    print(f"{size:,}: rank-1 float64 {rank1_64:.4f}, fixed point {rank1_fixed:.4f}, MPC = fixed point on the "
          f"timed probes: {mpc_equal}", flush=True)
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--queries", type=int, default=5, help="single queries timed per size and method")
    parser.add_argument("--comparisons", default="both", choices=("bitwise", "fss", "both"))
    parser.add_argument("--parties", default="processes", choices=("processes", "threads"),
                        help="processes: each party its own process, so a server's memory is its own")
    parser.add_argument("--spread", type=float, default=0.45, help="norm of a look-alike's noise")
    parser.add_argument("--synthetic-lfw", action="store_true", help="stand-ins for LFW (a dry run, not published)")
    parser.add_argument("--keep", action="store_true", help="keep the gallery folders")
    args = parser.parse_args()
    args.methods = ["bitwise", "fss"] if args.comparisons == "both" else [args.comparisons]
    rng = np.random.default_rng(0)
    load_start = os.getloadavg()[0]
    emb, labels = lfw(args.synthetic_lfw, rng)
    probes, base = split(labels, rng)
    print(f"LFW: {len(emb)} embeddings, {len(probes)} probes, {len(base)} gallery images; norms up to "
          f"{np.linalg.norm(emb, axis=1).max():.3f} (a {FRAC}-bit gallery takes {store.max_norm(FRAC):.3f})")
    rows = [one_size(int(s), emb, labels, probes, base, args, rng) for s in args.sizes.split(",")]
    result = dict(benchmark="identify_scaling", frac_bits=FRAC, ring_bits=store.ring_bits(FRAC),
                  probes=len(probes), lfw_gallery_images=len(base), spread=args.spread, parties=args.parties,
                  synthetic_lfw=args.synthetic_lfw, load_average_1min=[round(load_start, 2), round(os.getloadavg()[0], 2)],
                  targets={"seconds_per_query": 1.0, "mb_per_server": 2048}, sizes=rows)
    if args.synthetic_lfw:
        import json
        print(json.dumps(result))
    else:  # with threads, a "server's" peak is the whole process's: both servers and the dealer
        publish(result, name="identify_scaling" + ("_threads" if args.parties == "threads" else ""))


if __name__ == "__main__":
    main()
