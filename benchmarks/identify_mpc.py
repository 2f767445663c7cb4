"""1:N identification under MPC against a gallery of every LFW embedding.

    python benchmarks/identify_mpc.py [--latency-queries 200] [--nearest-probes 1000] [--sizes 1000,3000]

1. Enrols every embedded LFW image (benchmarks/cache, see CACHE.md) into a secret-shared gallery, one
   atomic change, under benchmarks/out/identify_gallery/.
2. Rank-1 accuracy, leave-one-out: every image of a person with at least two images is a probe, its own
   entry is left out (the servers are told which row to skip: an evaluation device, not part of a
   deployment), and it is correct when the nearest other entry is the same person. Computed under MPC
   in the 'all' mode (every distance to the client) for all probes and in the 'nearest' mode (argmin under
   MPC, only the nearest to the client) for a sample, and compared with float64 numpy.
3. Latency: single queries one after another in a long-lived session (the servers keep the gallery
   loaded), median per query for each reveal mode, end to end on the client (share, MPC, reconstruct,
   decide; not the embedding). The gallery is masked once per session (F = G - B opened, see
   ppfr/gallery/protocols.py and ppfr.mpc.reuse.MaskedRows); that preprocessing is reported apart.
   Galleries of up to a million entries: benchmarks/identify_scaling.py.
4. Scaling: the same single-query latency on galleries of the first --sizes entries (a few queries each)
   and on the whole gallery, drawn as identify_mpc_scaling.png / .svg (matplotlib: the `bench` extra).

The last line of output is one JSON object with every figure.
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

from lfw_verify_plain import embed_from_box  # noqa: E402  (the plaintext benchmark's stand-in for missed faces)
from plots import scaling_plot  # noqa: E402
from publish import publish  # noqa: E402

from ppfr.embed.lfw import images_dir, load_lfw_embeddings  # noqa: E402
from ppfr.gallery import Gallery  # noqa: E402
from ppfr.gallery import protocols as P  # noqa: E402

OUT = HERE / "out"
RESULTS = HERE / "results"
MODES = ("all", "nearest", "match")


def every_lfw_image():
    """(embeddings, labels, class names, paths) of all of LFW: the cache, plus the few images where HOG
    found no face embedded from the fixed box, as benchmarks/lfw_verify_plain.py does for its pairs."""
    full = load_lfw_embeddings(compute=False)
    missing = sorted(p for p, _ in full.skipped)
    emb, labels, paths = full.embeddings, full.labels, list(full.paths)
    if missing:
        extra = embed_from_box(images_dir(), full, missing)
        names = {n: i for i, n in enumerate(full.class_names)}
        emb = np.concatenate([emb, [extra[p] for p in missing]])
        labels = np.concatenate([labels, [names[p.split("/")[0]] for p in missing]])
        paths += missing
    return emb, labels, list(full.class_names), paths, len(missing), full.embedder


def plaintext_nearest(emb: np.ndarray, probes: np.ndarray, chunk: int = 512):
    """(row, squared distance) of each probe's nearest other entry, float64."""
    g = emb.astype(np.float64)
    norms = (g * g).sum(1)
    rows, best = np.empty(len(probes), np.int64), np.empty(len(probes))
    for s in range(0, len(probes), chunk):
        p = probes[s:s + chunk]
        d = norms[p][:, None] - 2 * g[p] @ g.T + norms[None]
        d[np.arange(len(p)), p] = np.inf
        rows[s:s + chunk] = d.argmin(1)
        best[s:s + chunk] = d[np.arange(len(p)), rows[s:s + chunk]]
    return rows, best


def server_stats(g: Gallery):
    return g.parties.session.stats()["server0"]


def drop_gallery(srv):
    """Run by both servers: forget the held gallery, so that the next query reads and masks it anew."""
    srv.state.pop(P.STATE, None)


def latency(g: Gallery, emb, probes, reveal: str) -> dict:
    times = []
    before = server_stats(g)
    for p in probes:
        t = time.perf_counter()
        g.identify(emb[p:p + 1], reveal=reveal, exclude=[p])
        times.append(time.perf_counter() - t)
    spent = server_stats(g) - before
    return {"median_ms": round(1e3 * statistics.median(times), 2),
            "p90_ms": round(1e3 * float(np.percentile(times, 90)), 2),
            "bytes_to_other_server_per_query": spent.bytes_to["server1"] // len(probes),
            "bytes_to_client_per_query": spent.bytes_to["client"] // len(probes),
            "rounds_per_query": spent.rounds / len(probes),
            "offline_bytes_per_query": spent.offline_bytes // len(probes)}


def run_rank1(g: Gallery, emb, labels, probes, want_rows, want_sq, args, rng) -> dict:
    """Rank-1 of every probe in the 'all' mode (batches of 64) and of a sample in the 'nearest' mode."""
    g.batch = 64
    t = time.perf_counter()
    hits = g.identify(emb[probes], reveal="all", exclude=probes, progress=True)
    all_seconds = time.perf_counter() - t
    rows_all = np.array([h.entry for h in hits])
    sq_all = np.array([h.squared_distance for h in hits])
    rank1_all = float(np.mean(labels[rows_all] == labels[probes]))
    plain = float(np.mean(labels[want_rows] == labels[probes]))
    print(f"MPC ('all') rank-1: {100 * rank1_all:.2f} % over {len(probes)} probes in {all_seconds:.1f} s; "
          f"nearest row differs from float64 for {int((rows_all != want_rows).sum())}, "
          f"max |squared distance error| {np.abs(sq_all - want_sq).max():.2e}")

    # 'nearest' mode: the argmin under MPC, batches of 16
    sample = probes if args.nearest_probes <= 0 else \
        np.sort(rng.choice(probes, min(args.nearest_probes, len(probes)), replace=False))
    pos = np.searchsorted(probes, sample)
    g.batch = 16
    t = time.perf_counter()
    hits = g.identify(emb[sample], reveal="nearest", exclude=sample, progress=True)
    nearest_seconds = time.perf_counter() - t
    rows_near = np.array([h.entry for h in hits])
    rank1_near = float(np.mean(labels[rows_near] == labels[sample]))
    rank1_plain_sample = float(np.mean(labels[want_rows[pos]] == labels[sample]))
    print(f"MPC ('nearest') rank-1 on {len(sample)} probes: {100 * rank1_near:.2f} % "
          f"(float64 on the same probes: {100 * rank1_plain_sample:.2f} %) in {nearest_seconds:.1f} s")
    return dict(
        rank1_mpc_all=round(rank1_all, 5), rank1_equal=rank1_all == plain,
        nearest_rows_differing=int((rows_all != want_rows).sum()),
        max_abs_error_squared_distance=float(np.abs(sq_all - want_sq).max()),
        rank1_mpc_nearest_sample=round(rank1_near, 5), rank1_plaintext_same_sample=round(rank1_plain_sample, 5),
        nearest_sample_size=len(sample), nearest_rows_differing_sample=int((rows_near != want_rows[pos]).sum()),
        all_probes_seconds=round(all_seconds, 2), all_probes_ms_per_query=round(1e3 * all_seconds / len(probes), 3),
        nearest_sample_ms_per_query=round(1e3 * nearest_seconds / len(sample), 3))


def scaling(emb, labels, class_names, sizes, queries: int, rng) -> list[dict]:
    """Single-query latency per reveal mode on galleries of the first `size` entries of LFW."""
    out = []
    for size in sizes:
        root = OUT / f"identify_gallery_{size}"
        shutil.rmtree(root, ignore_errors=True)
        inside = np.arange(size)
        probes = rng.choice(inside, min(queries, size), replace=False)
        with Gallery(root, batch=1) as g:
            g.enroll_many([class_names[k] for k in labels[:size]], emb[:size])
            g.identify(emb[probes[:1]], reveal="all", exclude=probes[:1])   # masking the gallery, untimed
            lat = {mode: latency(g, emb, probes, mode) for mode in MODES}
        shutil.rmtree(root, ignore_errors=True)
        print(f"gallery of {size}: " + ", ".join(f"'{m}' {r['median_ms']} ms" for m, r in lat.items()))
        out.append({"entries": int(size), "queries": len(probes), "latency_single_query": lat})
    return out


def plot_scaling(points: list[dict]) -> list[str]:
    series = {mode: ([p["entries"] for p in points], [p["latency_single_query"][mode]["median_ms"] for p in points])
              for mode in MODES}
    return scaling_plot(RESULTS / "identify_mpc_scaling", series, "gallery entries", "median ms per query",
                        "1:N identification under MPC: one query against n entries")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency-queries", type=int, default=200, help="single queries timed per mode")
    parser.add_argument("--nearest-probes", type=int, default=1000,
                        help="probes whose rank-1 is also computed in the 'nearest' mode (0: all)")
    parser.add_argument("--keep", action="store_true", help="keep the gallery folder afterwards")
    parser.add_argument("--no-rank1", dest="rank1", action="store_false",
                        help="latency only: skip the rank-1 runs over the probes (the longest part)")
    parser.add_argument("--sizes", default="1000,3000",
                        help="smaller galleries (first N entries, comma-separated) whose latency is measured too, "
                             "for the scaling plot ('' for none)")
    parser.add_argument("--sizes-queries", type=int, default=30, help="single queries timed per mode and size")
    args = parser.parse_args()
    load_start = os.getloadavg()[0]   # other work on the machine skews the timings: reported

    emb, labels, class_names, paths, boxed, embedder = every_lfw_image()
    n = len(emb)
    counts = np.bincount(labels)
    probes = np.flatnonzero(counts[labels] >= 2)
    rng = np.random.default_rng(0)
    print(f"gallery: {n} LFW embeddings of {len(class_names)} people ({boxed} images where HOG found no "
          f"face embedded from a fixed box); probes: {len(probes)} images of people with >= 2 images")

    t = time.perf_counter()
    want_rows, want_sq = plaintext_nearest(emb, probes)
    plain_seconds = time.perf_counter() - t
    plain_rank1 = float(np.mean(labels[want_rows] == labels[probes]))
    print(f"plaintext float64 rank-1: {100 * plain_rank1:.2f} % ({plain_seconds:.1f} s)")

    root = OUT / "identify_gallery"
    shutil.rmtree(root, ignore_errors=True)
    with Gallery(root, batch=64) as g:
        t = time.perf_counter()
        g.enroll_many([class_names[k] for k in labels], emb, sources=paths)
        enrol_seconds = time.perf_counter() - t
        print(f"enrolled {n} entries in {enrol_seconds:.2f} s")

        rank1 = run_rank1(g, emb, labels, probes, want_rows, want_sq, args, rng) if args.rank1 else {}

        # latency of single queries in a long-lived session
        g.batch = 1
        timed = rng.choice(probes, args.latency_queries, replace=False)
        # reading and masking the gallery, timed with a first query: one opening of F = G - B (n x d ring elements)
        g.parties.run(drop_gallery)
        before = server_stats(g)
        t = time.perf_counter()
        g.identify(emb[timed[:1]], reveal="all", exclude=timed[:1])
        mask_seconds = time.perf_counter() - t
        mask_stats = server_stats(g) - before
        lat = {mode: latency(g, emb, timed, mode) for mode in MODES}
        for mode, r in lat.items():
            print(f"latency '{mode}': median {r['median_ms']} ms, p90 {r['p90_ms']} ms, "
                  f"{r['bytes_to_other_server_per_query']} B to the other server per query")
        print(f"reading and masking the gallery (and a first query): {mask_seconds:.2f} s, {mask_stats.bytes_to['server1']} B "
              f"between the servers, {mask_stats.offline_bytes} B from the dealer per server")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    sizes = sorted({int(v) for v in args.sizes.split(",") if v.strip()} - {n})
    points = scaling(emb, labels, class_names, [v for v in sizes if v < n], args.sizes_queries, rng)
    points.append({"entries": n, "queries": len(timed), "latency_single_query": lat})
    scaling_files = plot_scaling(points)
    print(f"scaling plot written to {', '.join(scaling_files)}")

    publish(dict(
        benchmark="identify_mpc", load_average_1min=[round(load_start, 2), round(os.getloadavg()[0], 2)], gallery_entries=n, people=len(class_names), probes=len(probes),
        embedder=embedder, images_from_fixed_box=boxed,
        rank1_plaintext=round(plain_rank1, 5), **rank1,
        enrol_seconds=round(enrol_seconds, 3),
        latency_single_query=lat, latency_target_ms=50,
        mask_seconds=round(mask_seconds, 3), mask_bytes_between_servers=mask_stats.bytes_to["server1"],
        mask_offline_bytes_per_server=mask_stats.offline_bytes,
        scaling=points, scaling_images=scaling_files,
    ))


if __name__ == "__main__":
    main()
