"""`ppfr enroll`, `ppfr identify`, `ppfr verify`, `ppfr remove`: the gallery from the command line."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import NamedTuple

import click

from ppfr.config import fixed_point, section
from ppfr.failures import command
from ppfr.net.options import parties_option

from .service import REVEAL, TOLERANCE

_embed = section("embed")

_HOW = """
The client embeds each face with dlib (detect, align, 128-d ResNet descriptor); only additive secret
shares of the embedding leave it, one for each of two servers. The servers compute squared Euclidean
distances on the shares; the client reconstructs the answer. Two faces are the same person when their
distance is at most the tolerance (0.6, dlib's convention; the MPC compares squared distances with 0.36).
"""


def default_gallery() -> Path:
    return Path(os.environ.get("PPFR_GALLERY") or section("paths").get("gallery", "gallery"))


def _gallery_option(f):
    return click.option("--gallery", "gallery_dir", type=click.Path(file_okay=False, path_type=Path),
                        default=default_gallery, show_default="$PPFR_GALLERY or paths.gallery: gallery",
                        help="Gallery folder: server0/ and server1/ hold the two servers' shares, client/ "
                             "the client's record of names.")(f)


def _face_options(f):
    f = click.option("--detector", type=click.Choice(["hog", "cnn"]), default=_embed.get("detector", "hog"),
                     show_default=True, help="dlib face detector.")(f)
    return click.option("--policy", type=click.Choice(["largest", "center", "single"]),
                        default=_embed.get("policy", "largest"), show_default=True,
                        help="Which face an image stands for when it shows several.")(f)


_json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
_tolerance_option = click.option(
    "--tolerance", type=click.FloatRange(0, 100, min_open=True), default=TOLERANCE, show_default=True,
    help="Largest Euclidean distance between two faces of one person (compared squared under MPC).")


class _Image(NamedTuple):
    path: Path
    vector: object        # the embedding, or None
    why: str              # why there is none: "reason: detail"
    reason: str           # the bare reason code (no_face, multiple_faces, ...)
    faces: int            # faces found; with several, the policy kept one


_KEPT = {"largest": "the largest", "center": "the one nearest the centre"}


def _embed_images(paths, detector: str, policy: str, progress: bool, notes: bool = True) -> tuple[list[_Image], str]:
    """Each image's embedding (or why not) and the embedder's name, embedding on the client. With
    --policy single an image of several faces stops the command (nothing is written or compared);
    otherwise each such image gets a note on stderr (unless not `notes`) saying which face was used."""
    from ppfr.embed.embedders import embedder_name
    from ppfr.embed.pipeline import EmbedSettings, embed_files

    settings = EmbedSettings(embedder=_embed.get("embedder", "dlib"), detector=detector, policy=policy,
                             upsample=_embed.get("upsample", 0), retry_upsample=_embed.get("retry_upsample", 1))
    workers = 1 if len(paths) <= 4 else None   # a pool's start-up costs more than a few images
    results = list(embed_files(paths, settings, workers, progress))   # drained, so the bar completes
    out = [_Image(p, r.vector, f"{r.reason}: {r.detail}" if r.detail else r.reason, r.reason, r.faces)
           for p, r in zip(paths, results)]
    several = [str(i.path) for i in out if i.reason == "multiple_faces"]
    if several:
        raise click.ClickException(f"{', '.join(several)}: several faces, and --policy single takes only images "
                                   f"with exactly one; crop the image, or use --policy largest")
    for i in out if notes else []:
        if i.faces > 1:
            click.echo(f"note: {i.path} shows {i.faces} faces; {_KEPT[policy]} was used "
                       f"(--policy single refuses such images)", err=True)
    return out, embedder_name(settings.embedder)


def _mpc_stats(session, before, seconds) -> dict:
    """Time and traffic of the MPC part (not the embedding): bytes server 0 sent (server 1 sends the
    same), its rounds, and its preprocessing traffic with the dealer."""
    d = session.stats()["server0"] - before
    return {"seconds": round(seconds, 4), "bytes_per_server": d.bytes_sent, "rounds": d.rounds,
            "offline_bytes_per_server": d.offline_bytes}


@command(epilog=_HOW)
@click.argument("name")
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_gallery_option
@_face_options
@_json_option
@click.option("--quiet", is_flag=True, help="No progress bar.")
@parties_option
def enroll(name, images, gallery_dir, detector, policy, as_json, quiet):
    """Enrol NAME from one or more face IMAGES, without retraining anything.

    Each image with a face becomes one gallery entry of NAME (enrolling a known NAME again adds
    entries). Images without a usable face are reported and skipped. The change is atomic: both servers
    write a new version of their half, then the client's record is switched to it.

    Example: ppfr enroll "Ada Lovelace" ada1.jpg ada2.jpg
    """
    from .service import Gallery

    embedded, embedder = _embed_images(list(images), detector, policy, progress=not quiet and not as_json,
                                       notes=not as_json)
    ok = [(i.path, i.vector) for i in embedded if i.vector is not None]
    skipped = [{"image": str(i.path), "reason": i.why} for i in embedded if i.vector is None]
    for s in skipped if not as_json else []:
        click.echo(f"skipped {s['image']}: {s['reason']}", err=True)
    if not ok:
        raise click.ClickException(f"no face found in any of the {len(images)} images; nothing enrolled")
    start = time.perf_counter()
    with Gallery(gallery_dir) as g:
        before = g.parties.session.stats()["server0"]
        rec = g.enroll(name, [v for _, v in ok], sources=[str(p) for p, _ in ok], embedder=embedder)
        stats = _mpc_stats(g.parties.session, before, time.perf_counter() - start)
    summary = {"name": name, "enrolled": len(ok), "skipped": skipped, "gallery": str(gallery_dir),
               "entries": len(rec.entries), "people": len(set(rec.names())), "version": rec.version,
               "images": [{"image": str(i.path), "faces": i.faces} for i in embedded if i.vector is not None],
               "mpc": stats}
    if as_json:
        click.echo(json.dumps(summary))
    else:
        click.echo(f"enrolled {len(ok)} image(s) of {name}; the gallery now holds {summary['entries']} "
                   f"entries of {_people(summary['people'])} (version {rec.version}, {gallery_dir})")


@command(epilog=_HOW)
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_gallery_option
@_tolerance_option
@click.option("--reveal", type=click.Choice(["nearest", "match", "all"]), default=REVEAL, show_default=True,
              help="What the client learns per query: 'nearest' only the nearest entry and its distance "
                   "(argmin under MPC); 'match' only the identity if within the tolerance, else nothing, "
                   "not even a distance; 'all' the distance to every entry (fastest).")
@click.option("--top", type=click.IntRange(1), default=1, show_default=True,
              help="With --reveal all: also list the K nearest people.")
@_face_options
@_json_option
@click.option("--quiet", is_flag=True, help="No progress bar.")
@parties_option
def identify(images, gallery_dir, tolerance, reveal, top, detector, policy, as_json, quiet):
    """Who is in each of IMAGES? 1:N search of the enrolled gallery under MPC.

    The servers compute the squared distance from the query to every entry in one matrix product,
    ||q||^2 - 2 q.G^T + ||g||^2; depending on --reveal the client gets all of them or only the nearest.
    A face is that person when the distance is at most --tolerance, otherwise 'unknown'.
    """
    from .service import Gallery

    # its MPC session starts only when a query needs it (require_entries may need one), and ends here
    with Gallery(gallery_dir) as g:
        # before the slow part: nobody enrolled, nothing to embed for
        g.require_entries()
        embedded, _ = _embed_images(list(images), detector, policy, progress=not quiet and not as_json,
                                    notes=not as_json)
        ok = [(i.path, i.vector) for i in embedded if i.vector is not None]
        results = {str(i.path): {"image": str(i.path), "error": i.why} for i in embedded if i.vector is None}
        faces = {str(i.path): i.faces for i in embedded}
        stats = None
        if ok:
            start = time.perf_counter()
            before = g.parties.session.stats()["server0"]
            answers = g.identify([v for _, v in ok], reveal=reveal, tolerance=tolerance, top=top)
            stats = _mpc_stats(g.parties.session, before, time.perf_counter() - start)
            for (p, _), a in zip(ok, answers):
                results[str(p)] = {"image": str(p), "faces": faces[str(p)], **a.as_dict()}
    ordered = [results[str(p)] for p in images]
    if as_json:
        click.echo(json.dumps({"gallery": str(gallery_dir), "reveal": reveal, "tolerance": tolerance,
                               "results": ordered, "mpc": stats}))
    else:
        for r in ordered:
            click.echo(f"{r['image']}: {_describe(r, tolerance)}")
    if not ok:
        raise SystemExit(1)


def _describe(r: dict, tolerance: float) -> str:
    if "error" in r:
        return f"no face ({r['error']})"
    if r["known"]:
        text = r["name"] + (f" (distance {r['distance']:.3f} <= {tolerance:g})" if r["distance"] is not None else "")
    elif r["nearest"] is not None:
        text = f"unknown (nearest: {r['nearest']} at {r['distance']:.3f} > {tolerance:g})"
    else:
        text = "unknown"
    if r.get("candidates"):
        text += "; nearest people: " + ", ".join(f"{c['name']} {c['distance']:.3f}" for c in r["candidates"])
    return text


@command(epilog=_HOW)
@click.argument("image_a", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("image_b", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_tolerance_option
@_face_options
@_json_option
@parties_option
def verify(image_a, image_b, tolerance, detector, policy, as_json):
    """Are IMAGE_A and IMAGE_B the same person? 1:1 verification under MPC.

    Both embeddings are secret-shared; the servers compute ||a - b||^2 on the shares (one round) and
    the client reconstructs it — the client learns that one distance, the servers nothing.
    """
    from ppfr.mpc import open_session

    from .service import pair_distances

    embedded, _ = _embed_images([image_a, image_b], detector, policy, progress=False, notes=not as_json)
    missing = [f"{i.path}: {i.why}" for i in embedded if i.vector is None]
    if missing:
        raise click.ClickException("no face to compare in " + "; ".join(missing))
    start = time.perf_counter()
    with open_session(fixed=fixed_point()) as session:
        before = session.stats()["server0"]
        (sq,) = pair_distances(embedded[0].vector[None], embedded[1].vector[None], session=session)
        stats = _mpc_stats(session, before, time.perf_counter() - start)
    sq = float(sq)
    distance = float(max(sq, 0.0) ** 0.5)
    same = sq <= tolerance ** 2
    if as_json:
        click.echo(json.dumps({"a": str(image_a), "b": str(image_b), "same": same, "distance": distance,
                               "squared_distance": sq, "tolerance": tolerance,
                               "faces": [i.faces for i in embedded], "mpc": stats}))
    else:
        verdict = "same person" if same else "different people"
        click.echo(f"{verdict} (distance {distance:.3f} {'<=' if same else '>'} {tolerance:g})")


@command(epilog=_HOW)
@click.argument("name")
@_gallery_option
@_json_option
@parties_option
def remove(name, gallery_dir, as_json):
    """Remove every entry of NAME from the gallery (from both servers' halves, atomically)."""
    from .service import Gallery

    with Gallery(gallery_dir) as g:
        removed = g.remove(name)
        rec = g.record
    summary = {"name": name, "removed": removed, "entries": len(rec.entries), "people": len(set(rec.names())),
               "version": rec.version, "gallery": str(gallery_dir)}
    if as_json:
        click.echo(json.dumps(summary))
    else:
        click.echo(f"removed {removed} entries of {name}; {summary['entries']} entries of "
                   f"{_people(summary['people'])} remain")


def _people(n: int) -> str:
    return f"{n} person" if n == 1 else f"{n} people"
