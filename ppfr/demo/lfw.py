"""The `ppfr demo` run on LFW: choose people, embed, train under MPC (and in plaintext), recognise
held-out images of the people it knows and images of people it never saw, and report.

Who is who (all drawn from a public seed, disjoint by person):
  known       `people` people with at least `min_images` images (at most `max_images` of each, so one
              person with 500 photos does not dominate); each person's images split train / held out
  background  one image each of `background` other people, trained as one more class named 'unknown':
              a softmax over a few people is confident about anyone, and a class of "everyone else"
              is what teaches it to say no (a threshold alone rejects far fewer strangers; see
              benchmarks/open_set.py)
  strangers   one image each of `strangers` further people, never seen in training
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ppfr.recognition.recognizer import UNKNOWN

LFW_HELP = ("LFW (Labeled Faces in the Wild) is needed: download the deep-funneled images "
            "(lfw-deepfunneled.tgz) and pairs.txt from http://vis-www.cs.umass.edu/lfw/ , unpack them into "
            "one folder (FOLDER/lfw-deepfunneled/<Name>/<Name>_0001.jpg or FOLDER/images_deepfunneled/...), "
            "then pass --lfw FOLDER or set PPFR_LFW=FOLDER (default: ../shared/data/lfw beside the repository)")


def find_lfw(lfw=None) -> Path:
    """The folder of per-person image folders: --lfw, else $PPFR_LFW, else ../shared/data/lfw beside the
    repository (paths.lfw in the config). Raises LFWMissing with instructions when there is none."""
    from ppfr.embed.lfw import LFWMissing, default_lfw_dir, images_dir

    root = Path(lfw) if lfw else default_lfw_dir()
    try:
        return images_dir(root)
    except LFWMissing:
        raise LFWMissing(f"no LFW images under {root}. {LFW_HELP}") from None


@dataclass
class DemoSplit:
    root: Path
    class_names: list[str]                 # the known people, sorted, then 'unknown' when background > 0
    train: list[tuple[str, int]]           # (path relative to root, label)
    heldout: list[tuple[str, int]]
    strangers: list[str]
    settings: dict = field(default_factory=dict)


def choose(root, people: int = 20, min_images: int = 20, max_images: int | None = 50, background: int = 300,
           strangers: int = 100, test_split: float = 0.2, seed: int = 0) -> DemoSplit:
    from ppfr.embed.dataset import list_dataset
    from ppfr.models.data import stratified_split

    listing = list_dataset(root)
    by_person: dict[int, list[str]] = {}
    for rel, label in listing.images:
        by_person.setdefault(label, []).append(rel)
    rng = np.random.default_rng([seed, 7])
    eligible = sorted(p for p, imgs in by_person.items() if len(imgs) >= min_images)
    if len(eligible) < people:
        raise ValueError(f"only {len(eligible)} people in {root} have at least {min_images} images; "
                         f"asked for {people}")
    if people < 2 and background == 0:
        raise ValueError("a classifier needs two classes: take at least 2 people, or a background class")
    known = sorted(rng.choice(eligible, people, replace=False).tolist(), key=lambda p: listing.class_names[p])
    known_set = set(known)
    others = [p for p in sorted(by_person) if p not in known_set]
    rng.shuffle(others)
    if background + strangers > len(others):
        raise ValueError(f"{len(others)} other people, fewer than the {background} + {strangers} asked for")
    pick_one = lambda p: by_person[p][int(rng.integers(len(by_person[p])))]  # noqa: E731
    background_imgs = [pick_one(p) for p in others[:background]]
    stranger_imgs = sorted(pick_one(p) for p in others[background:background + strangers])

    rows, labels = [], []
    for label, p in enumerate(known):
        imgs = by_person[p]
        if max_images and len(imgs) > max_images:
            imgs = sorted(rng.choice(imgs, max_images, replace=False).tolist())
        rows += imgs
        labels += [label] * len(imgs)
    labels = np.array(labels)
    test = stratified_split(labels, test_split, seed)
    names = [listing.class_names[p] for p in known] + ([UNKNOWN] if background else [])
    train = [(r, int(y)) for r, y, t in zip(rows, labels, test) if not t]
    train += [(r, people) for r in background_imgs]
    heldout = [(r, int(y)) for r, y, t in zip(rows, labels, test) if t]
    settings = dict(people=people, min_images=min_images, max_images=max_images, background=background,
                    strangers=strangers, test_split=test_split, seed=seed)
    return DemoSplit(Path(root), names, train, heldout, stranger_imgs, settings)


def embed_training(split: DemoSplit, use_cache: bool = True, workers: int | None = None, progress: bool = True):
    """Embeddings of the training images: from the shared LFW cache when it exists and was made from this
    very folder (same people, same files), else computed now with the same settings. Images without a face
    are dropped. Returns (x, labels, source, seconds)."""
    from ppfr.embed.lfw import LFW_SETTINGS, cache_path, load_lfw_embeddings
    from ppfr.embed.pipeline import embed_files

    start = time.perf_counter()
    paths = [r for r, _ in split.train]
    labels = np.array([y for _, y in split.train])
    cached = None
    if use_cache:
        try:
            cached = load_lfw_embeddings(compute=False, progress=False)
        except (FileNotFoundError, RuntimeError):   # no cache yet (RuntimeError: one is being built)
            cached = None
    if cached is not None and cached.settings.get("dataset") == f"lfw/{split.root.name}":
        index = cached.index()
        rows = np.array([index.get(p, -1) for p in paths])
        x = cached.embeddings[np.maximum(rows, 0)].astype(np.float64)
        keep = rows >= 0
        return x[keep], labels[keep], f"cache {cache_path().name}", time.perf_counter() - start
    vectors, keep = [], []
    for got in embed_files([split.root / p for p in paths], LFW_SETTINGS, workers, progress,
                           desc="embedding training images"):
        keep.append(got.vector is not None)
        if got.vector is not None:
            vectors.append(got.vector)
    x = np.array(vectors, dtype=np.float64).reshape(len(vectors), -1)
    return x, labels[np.array(keep, dtype=bool)], "computed", time.perf_counter() - start


def run_demo(lfw=None, *, people=20, min_images=20, max_images=50, background=300, strangers=100,
             test_split=0.2, seed=0, threshold=None, epochs=None, use_cache=True, model_dir=None,
             progress=True, log=print) -> dict:
    """The whole demo; returns the report as a dict (format_report prints it)."""
    import tempfile

    from ppfr.models.data import Preprocessing
    from ppfr.models.reference import TrainConfig, train_plaintext
    from ppfr.recognition.recognizer import DEFAULT_THRESHOLD

    if threshold is None:
        from ppfr.config import section
        threshold = float(section("recognize").get("threshold", DEFAULT_THRESHOLD))
    t0 = time.perf_counter()
    root = find_lfw(lfw)
    split = choose(root, people, min_images, max_images, background, strangers, test_split, seed)
    classes = len(split.class_names)
    log(f"LFW {root}: {people} people with >= {min_images} images, {len(split.train)} training images "
        f"({background} of them other people's, as the class '{UNKNOWN}'), {len(split.heldout)} held out, "
        f"{len(split.strangers)} images of people never seen")

    x, y, source, embed_seconds = embed_training(split, use_cache, progress=progress)
    log(f"training embeddings: {len(y)} ({source}, {embed_seconds:.1f} s)")
    prep = Preprocessing()
    xp = prep.apply(x)
    config = TrainConfig.from_config(epochs=epochs, seed=seed)

    tmp = None
    if model_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="ppfr-demo-")
        model_dir = Path(tmp.name)
    try:
        trained = _train_and_save(split, xp, y, prep, config, model_dir, progress)
        log(f"MPC training: {config.epochs} epochs in {trained.seconds:.1f} s; model saved as two shares in {model_dir}")
        t = time.perf_counter()
        plain = train_plaintext(xp, y, classes, config)
        plain_seconds = time.perf_counter() - t

        results, timings = _recognise(root, split, model_dir, threshold, progress)
    finally:
        if tmp is not None:
            tmp.cleanup()

    report = _score(results, plain, prep, split, threshold)
    report.update(
        lfw=str(root), settings=split.settings, classes=split.class_names, threshold=threshold,
        model=str(model_dir) if tmp is None else None,
        embedding={"source": source, "images": int(len(y)), "seconds": round(embed_seconds, 2)},
        training={"samples": int(len(y)), "classes": classes, "epochs": config.epochs,
                  "mpc_seconds": round(trained.seconds, 2), "plaintext_seconds": round(plain_seconds, 3),
                  "per_server": trained.stats["server0"]},
        recognition=timings, seconds=round(time.perf_counter() - t0, 1))
    return report


def _train_and_save(split: DemoSplit, xp, y, prep, config, model_dir, progress):
    """Train on shares (a progress bar of batches) and save the model as two halves in model_dir."""
    from tqdm import tqdm

    from ppfr.models.service import train_mpc
    from ppfr.models.store import save_model
    from ppfr.recognition.recognizer import new_session

    with new_session() as session:
        batches = -(-len(y) // config.batch_size) * config.epochs
        bar = tqdm(total=batches, desc="MPC training", unit="batch", disable=not progress, leave=False)
        try:
            trained = train_mpc(session, [(xp, y)], len(split.class_names), config,
                                progress=lambda *_: bar.update())
        finally:
            bar.close()
        save_model(session, model_dir, split.class_names, prep.as_dict(), config.as_dict())
    return trained


def _recognise(root, split: DemoSplit, model_dir, threshold, progress):
    """The real path, from image files, with the model loaded back from its two halves: [(rel, truth, face
    or None)] for the held-out images and the strangers (truth -1), and the recogniser's timings."""
    from tqdm import tqdm

    from ppfr.embed.detect import read_rgb
    from ppfr.recognition.recognizer import Recognizer

    queries = [(r, y_) for r, y_ in split.heldout] + [(r, -1) for r in split.strangers]
    results = []
    with Recognizer(model_dir, threshold) as rec:
        for rel, truth in tqdm(queries, desc="recognising", unit="img", disable=not progress, leave=False):
            # LFW photos are centred on the named person: recognise that face, not a bystander's
            faces = rec.recognize(read_rgb(root / rel), policy="center")
            results.append((rel, truth, faces[0] if faces else None))
        return results, rec.timings.as_dict()


def _score(results, plain, prep, split: DemoSplit, threshold) -> dict:
    """Decisions of the MPC run next to the plaintext model's (same algorithm in float64) on the same faces."""
    from ppfr.models.reference import CONFIDENCE_BANDS, confidence_thresholds, label_and_band
    from ppfr.recognition.recognizer import UNKNOWN

    names = split.class_names

    def plain_decisions(p):
        labels, _ = label_and_band(p, confidence_thresholds(threshold, CONFIDENCE_BANDS))
        return [label if label >= 0 and names[label] != UNKNOWN else -1 for label in labels]

    faced = [(truth, f) for _, truth, f in results if f is not None]
    if faced:
        p_plain = plain.predict_proba(prep.apply(np.array([f.embedding for _, f in faced])))
    else:    # no query image had a face: nothing to score
        p_plain = np.zeros((0, len(names)))
    truth = np.array([t for t, _ in faced], dtype=np.int64)
    # the MPC run's faces were named by the Recognizer (same class names and threshold)
    d_mpc = np.array([f.label if f.known else -1 for _, f in faced], dtype=np.int64)
    d_plain = np.array(plain_decisions(p_plain), dtype=np.int64)
    known = truth >= 0

    def rates(d):
        k, s = d[known], d[~known]
        return {"known_correct": _frac(np.sum(k == truth[known]), known.sum()),
                "known_rejected": _frac(np.sum(k == -1), known.sum()),
                "known_misnamed": _frac(np.sum((k != -1) & (k != truth[known])), known.sum()),
                "strangers_rejected": _frac(np.sum(s == -1), (~known).sum())}

    return {"queries": {"known": sum(1 for _, t, _ in results if t >= 0),
                        "strangers": sum(1 for _, t, _ in results if t < 0),
                        "no_face": [r for r, _, f in results if f is None]},
            "mpc": rates(d_mpc), "plaintext": rates(d_plain),
            "same_decision": _frac(np.sum(d_mpc == d_plain), len(d_mpc))}


def _frac(a, b):
    return float(a) / float(b) if b else None


def format_report(r: dict) -> str:
    pct = lambda v: "   -   " if v is None else f"{100 * v:6.1f} %"  # noqa: E731
    num = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731 - None when no face was found
    m, p, q, tr, rc = r["mpc"], r["plaintext"], r["queries"], r["training"], r["recognition"]
    srv = tr["per_server"]
    ms, batch = rc["ms_per_face"], rc["per_batch"]
    lines = [
        "",
        f"ppfr demo on LFW: {r['settings']['people']} people known, {q['known']} held-out images of them, "
        f"{q['strangers']} images of people never seen (threshold {r['threshold']:g})",
        "",
        f"{'':28}{'MPC':>10}{'plaintext':>12}",
        f"{'known faces named right':28}{pct(m['known_correct']):>10}{pct(p['known_correct']):>12}",
        f"{'known faces rejected':28}{pct(m['known_rejected']):>10}{pct(p['known_rejected']):>12}",
        f"{'known faces misnamed':28}{pct(m['known_misnamed']):>10}{pct(p['known_misnamed']):>12}",
        f"{'unknown faces rejected':28}{pct(m['strangers_rejected']):>10}{pct(p['strangers_rejected']):>12}",
        f"MPC and plaintext (same training in float64) take the same decision on {pct(r['same_decision']).strip()} "
        f"of faces (the client learns each face's label and confidence band only)",
        "",
        f"embedding     {r['embedding']['images']} training images ({r['embedding']['source']}, "
        f"{r['embedding']['seconds']:.1f} s)",
        f"MPC training  {tr['samples']} samples, {tr['classes']} classes, {tr['epochs']} epochs: "
        f"{tr['mpc_seconds']:.1f} s (plaintext {tr['plaintext_seconds']:.2f} s); per server "
        f"{srv['bytes_sent'] / 1e6:,.0f} MB sent in {srv['rounds']:,} rounds, {srv['offline_bytes'] / 1e6:,.0f} MB "
        f"from the dealer",
        f"recognition   per face: detect {num(ms['detect'], '.0f')} ms, embed {num(ms['embed'], '.0f')} ms, "
        f"MPC {num(ms['mpc'], '.1f')} ms; "
        f"per query {num(batch['bytes_per_server'] and batch['bytes_per_server'] / 1e3, ',.0f')} kB in "
        f"{num(batch['rounds'], 'd')} rounds per server, "
        f"{num(batch['offline_bytes_per_server'] and batch['offline_bytes_per_server'] / 1e3, ',.0f')} kB from the dealer",
        f"total         {r['seconds']:.0f} s" + (f"; model kept in {r['model']}" if r.get("model") else ""),
    ]
    if q["no_face"]:
        lines.insert(-1, f"no face found in {len(q['no_face'])} image(s): {', '.join(q['no_face'][:3])}"
                         + (" ..." if len(q["no_face"]) > 3 else ""))
    return "\n".join(lines)
