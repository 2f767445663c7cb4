"""`ppfr demo`: the README's main job, end to end on LFW (see ppfr.demo.lfw)."""
from __future__ import annotations

import json
from pathlib import Path

import click

from ppfr.config import section
from ppfr.failures import command
from ppfr.net.options import parties_option

_cfg = section("demo")


@command()
@click.option("--lfw", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="LFW folder (holding images_deepfunneled/ or lfw-deepfunneled/).  "
                   "[default: $PPFR_LFW, else ../shared/data/lfw beside the repository]")
@click.option("--people", type=click.IntRange(1), default=_cfg.get("people", 20), show_default=True,
              help="How many people the classifier learns (drawn among those with --min-images images).")
@click.option("--min-images", type=click.IntRange(2), default=_cfg.get("min_images", 20), show_default=True,
              help="Only people with at least this many LFW images can be chosen (enough to train and test).")
@click.option("--max-images", type=click.IntRange(2), default=_cfg.get("max_images", 50), show_default=True,
              help="Use at most this many images of one person (LFW has 530 of George W. Bush).")
@click.option("--background", type=click.IntRange(0), default=_cfg.get("background", 300), show_default=True,
              help="Images of other people (one each) trained as the class 'unknown' (0: none).")
@click.option("--strangers", type=click.IntRange(0), default=_cfg.get("strangers", 100), show_default=True,
              help="Images of people never seen (one each) to test that unknown faces are rejected.")
@click.option("--test-split", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=_cfg.get("test_split", 0.2), show_default=True, help="Held-out fraction of each person's images.")
@click.option("--epochs", type=click.IntRange(1), default=None,
              help="Training epochs.  [default: train.epochs of the config, 10]")
@click.option("-t", "--threshold", type=click.FloatRange(0, 1), default=None,
              help="Probability a face's top class needs to be named.  [default: recognize.threshold, 0.5]")
@click.option("--seed", type=int, default=_cfg.get("seed", 0), show_default=True, help="Seeds who is chosen and the training.")
@click.option("--no-cache", is_flag=True, help="Embed the training images now even when the LFW embedding cache "
              "(benchmarks/cache/) exists.")
@click.option("-o", "--output", "model_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep the trained model (two shares and the client's record) here, for `ppfr recognize -m`. "
                   "[default: a temporary folder, removed at the end]")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
@click.option("--quiet", is_flag=True, help="No progress bars or log lines.")
@parties_option
def demo(lfw, people, min_images, max_images, background, strangers, test_split, epochs, threshold, seed, no_cache,
         model_dir, as_json, quiet):
    """Privacy-preserving face recognition end to end on LFW, in a few minutes.

    Embeds the images of a few LFW people on the client (dlib), trains a softmax classifier on secret
    shares of the embeddings with two servers (MPC), then recognises held-out images of those people and
    images of people it never saw through the same path as `ppfr recognize`: detect, embed, share, classify
    on shares, reconstruct at the client. The report compares the MPC decisions with a plaintext model
    trained the same way, and gives timings and the bytes the servers exchanged.
    """
    from .lfw import format_report, run_demo

    log = (lambda *a: None) if quiet or as_json else (lambda msg: click.echo(msg, err=True))
    report = run_demo(lfw, people=people, min_images=min_images, max_images=max_images, background=background,
                      strangers=strangers, test_split=test_split, seed=seed, threshold=threshold, epochs=epochs,
                      use_cache=not no_cache, model_dir=model_dir, progress=not quiet, log=log)
    click.echo(json.dumps(report) if as_json else format_report(report))
