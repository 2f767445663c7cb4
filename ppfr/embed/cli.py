"""`ppfr embed`: a dataset folder in, one embeddings .npz and a JSON report of skipped images out."""
from __future__ import annotations

import json
from pathlib import Path

import click

from ppfr.config import section
from ppfr.failures import command

from .detect import DETECTORS, POLICIES

_cfg = section("embed")


def default_report_path(output: Path) -> Path:
    return output.with_name(output.stem + ".report.json")


@command()
@click.argument("dataset_dir", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              default=_cfg.get("output", "embeddings.npz"), show_default=True,
              help="Embeddings file to write (.npz, replaced atomically).")
@click.option("--policy", type=click.Choice(POLICIES), default=_cfg.get("policy", "largest"), show_default=True,
              help="Which face an image stands for: the largest; the one nearest the centre (for "
                   "pre-cropped sets such as LFW); or 'single': skip images without exactly one face.")
@click.option("--detector", type=click.Choice(DETECTORS), default=_cfg.get("detector", "hog"), show_default=True,
              help="dlib's HOG detector (fast) or its CNN (MMOD) detector (slower, finds more poses).")
@click.option("--upsample", type=click.IntRange(0, 3), default=_cfg.get("upsample", 0), show_default=True,
              help="Upsample images this many times (x2 each) before detecting: finds smaller faces, slower.")
@click.option("--retry-upsample", type=click.IntRange(0, 3), default=_cfg.get("retry_upsample", 1),
              show_default=True,
              help="When no face is found, look again at this upsampling (0: no retry).")
@click.option("--embedder", default=_cfg.get("embedder", "dlib"), show_default=True,
              help="dlib (ResNet, 5-point alignment), dlib68 (68-point alignment) or "
                   "openface:WEIGHTS.pt (OpenFace nn4.small2; needs torch and your weights file).")
@click.option("--workers", type=click.IntRange(1), default=None,
              help="Processes to use.  [default: all cores]")
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the JSON report of skipped files.  [default: OUTPUT.report.json]")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def embed(dataset_dir, output, policy, detector, upsample, retry_upsample, embedder, workers, report,
          as_json, quiet):
    """Embed every face of DATASET_DIR/<person>/*.{jpg,jpeg,png}.

    Each image is read, its face detected (picked by --policy), aligned with dlib's landmarks and
    turned into a 128-d descriptor by dlib's ResNet (two faces of one person are typically closer
    than 0.6). The output .npz holds float32 embeddings (N x 128), integer labels, class names,
    image paths relative to DATASET_DIR and the embedder's name.

    No image is dropped silently: every file that gives no embedding is listed in the JSON report
    with its reason: unreadable (corrupt or not an image), too_large (above limits.max_megapixels),
    no_face, multiple_faces (policy 'single'), not_an_image (extension other than jpg/jpeg/png),
    not_in_person_folder, nested_folder, error. Hidden files (.name) are passed over.

    Example: ppfr embed ../shared/data/lfw/images_deepfunneled -o lfw.npz --policy center
    """
    from .embedders import EmbedderError, embedder_name
    from .pipeline import EmbedSettings, embed_dataset
    from ppfr.atomic import write_bytes_atomic

    try:
        embedder_name(embedder)
    except EmbedderError as e:
        raise click.BadParameter(str(e), param_hint="--embedder") from None
    settings = EmbedSettings(embedder=embedder, detector=detector, policy=policy, upsample=upsample,
                             retry_upsample=retry_upsample or None)
    result, summary = embed_dataset(dataset_dir, settings, workers=workers, progress=not quiet)

    report = report or default_report_path(output)
    write_bytes_atomic(report, json.dumps(summary, indent=1).encode())
    if len(result) == 0:
        raise click.ClickException(
            f"no face embedded from the {summary['images_found']} images of {dataset_dir}; "
            f"reasons in {report}")
    result.save(output)

    brief = {k: v for k, v in summary.items() if k != "skipped"}
    brief.update(output=str(output), report=str(report))
    if as_json:
        click.echo(json.dumps(brief))
    else:
        click.echo(f"embedded {brief['embedded']} of {brief['images_found']} images "
                   f"({brief['classes']} people) in {brief['seconds']:.1f} s -> {output}")
        if brief["skipped_count"]:
            reasons = ", ".join(f"{n} {r}" for r, n in sorted(brief["skipped_by_reason"].items()))
            click.echo(f"skipped {brief['skipped_count']} files ({reasons}); see {report}")
