"""`ppfr train-mpc`: embeddings in, a softmax classifier trained on secret shares out (two halves and
the client's record), with the plaintext reference trained the same way for comparison."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ppfr.config import section
from ppfr.failures import command

from .defaults import TRAIN_DEFAULTS

_cfg = section("train")


class PartiesType(click.ParamType):
    """threads, processes, or an existing parties file (*.yaml)."""
    name = "threads|processes|FILE"

    def convert(self, value, param, ctx):
        if value in ("threads", "processes"):
            return value
        if str(value).endswith((".yaml", ".yml")) and Path(value).is_file():
            return str(value)
        self.fail(f"{value!r} is neither threads, processes nor an existing parties file (*.yaml)", param, ctx)


def _default(key):
    return _cfg.get(key, TRAIN_DEFAULTS[key])


@command()
@click.argument("embeddings", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path),
              default=section("paths").get("weights", "weights"), show_default=True,
              help="Root of the model directories: OUTPUT/server0/ and OUTPUT/server1/ (each server's "
                   "shares) and OUTPUT/client/ (the client's record with the class names).")
@click.option("--epochs", type=click.IntRange(1), default=_default("epochs"), show_default=True,
              help="Passes over the training rows (each in a fresh public random order).")
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=_default("lr"), show_default=True,
              help="Learning rate.")
@click.option("--momentum", type=click.FloatRange(0, 1, max_open=True), default=_default("momentum"),
              show_default=True, help="Heavy-ball momentum; cheap under MPC and much faster to converge.")
@click.option("--batch-size", type=click.IntRange(1), default=_default("batch_size"), show_default=True,
              help="Rows per SGD step; the last batch of an epoch may be smaller.")
@click.option("--l2", type=click.FloatRange(0), default=_default("l2"), show_default=True,
              help="L2 penalty on the weights (not the bias).")
@click.option("--seed", type=int, default=_default("seed"), show_default=True,
              help="Seeds the test split, the initial weights and the (public) batch order.")
@click.option("--test-split", type=click.FloatRange(0, 1, max_open=True), default=_default("test_split"),
              show_default=True, help="Fraction of each class held out for testing (stratified; 0: none).")
@click.option("--scale", type=click.FloatRange(0, min_open=True), default=_default("scale"), show_default=True,
              help="Client-side preprocessing: each embedding is L2-normalised, then multiplied by this.")
@click.option("--normalize/--no-normalize", default=_default("l2_normalize"), show_default=True,
              help="L2-normalise each embedding before scaling (per row: needs no other client's data).")
@click.option("--loss", "report_loss", is_flag=True,
              help="Show the training loss. The servers then reveal each batch's probabilities to the "
                   "client (never to each other); with several data owners the client would see "
                   "probabilities of others' samples, so it is off by default.")
@click.option("--no-plaintext", is_flag=True, help="Skip the plaintext reference run.")
@click.option("--parties", type=PartiesType(), default=None,
              help="Run the two servers and the dealer in threads of this process, in processes of their "
                   "own connected by sockets, or (a parties FILE, *.yaml) against the `ppfr server` and "
                   "`ppfr dealer` services it names (default: the config's mpc.parties, threads).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train_mpc(embeddings, output, epochs, lr, momentum, batch_size, l2, seed, test_split, scale, normalize,
              report_loss, no_plaintext, parties, as_json, quiet):
    """Train a softmax classifier on secret-shared EMBEDDINGS (one or more .npz files of `ppfr embed`,
    each from its own data owner).

    Each client checks its file, L2-normalises and scales each embedding and splits embeddings, one-hot
    labels and the initial weights into two additive shares, one per server. The two servers run
    mini-batch SGD with momentum on cross-entropy entirely on shares (logits, softmax, gradients and the
    loss are never revealed to either) and each writes its half of the model to OUTPUT/serverN/. The
    client keeps the class names and the digests of both halves in OUTPUT/client/. Classes are the union
    of the files' class names; the held-out test rows (--test-split, stratified by class) are classified
    on shares too, and only the client reconstructs the probabilities.

    Unless --no-plaintext, the same algorithm (same initial weights, batch order and hyperparameters) is
    run in float64 for comparison. The summary gives classes, samples, MPC and plaintext train/test
    accuracy, seconds, and the bytes and rounds each server sent.

    Example: ppfr train-mpc lfw10.npz -o weights/ --epochs 10
    """
    from .data import Preprocessing, load_dataset, split_dataset
    from .reference import TrainConfig
    from .train import run_training

    config = TrainConfig.from_config(epochs=epochs, lr=lr, momentum=momentum, batch_size=batch_size, l2=l2,
                                     seed=seed)
    prep = Preprocessing(l2_normalize=normalize, scale=scale)
    split = split_dataset(load_dataset(embeddings), test_split, seed)
    summary = run_training(split, config, prep, output, plaintext=not no_plaintext,
                           report_loss=report_loss, progress=not quiet, parties=parties)
    summary["inputs"] = [str(p) for p in embeddings]
    if as_json:
        click.echo(json.dumps(summary, indent=1))
    else:
        click.echo(format_summary(summary))





def _pct(v):
    return "-" if v is None else f"{100 * v:.2f} %"


def format_summary(s: dict) -> str:
    mpc, plain = s["mpc"], s.get("plaintext") or {}
    lines = [
        f"classes         {s['classes']}",
        f"samples         {s['train_samples']} train, {s['test_samples']} test ({s['clients']} file(s))",
        f"accuracy MPC    train {_pct(mpc['train_accuracy'])}   test {_pct(mpc['test_accuracy'])}",
        f"accuracy plain  train {_pct(plain.get('train_accuracy'))}   test {_pct(plain.get('test_accuracy'))}",
        f"seconds         MPC training {mpc['train_seconds']:.1f} ({mpc['seconds_per_epoch']:.2f}/epoch), "
        f"MPC prediction {mpc['predict_seconds']:.1f}"
        + (f", plaintext training {plain['train_seconds']:.2f}" if plain else "")
        + (f"; parties in {s['parties']}" if "parties" in s else ""),
    ]
    for server, st in mpc["stats"].items():
        lines.append(f"{server:<16}{st['bytes_sent'] / 1e6:,.1f} MB sent, {st['rounds']:,} rounds, "
                     f"{st['offline_bytes'] / 1e6:,.1f} MB from the dealer")
    if mpc.get("losses"):
        lines.append("loss (client)   " + " ".join(f"{v:.4f}" for v in mpc["losses"]))
    if plain and s["test_samples"]:
        lines.append(f"agreement       MPC and plaintext predict the same class for "
                     f"{_pct(s['prediction_agreement'])} of test samples")
    lines.append(f"model           {s['model_id']}: {s['paths']['server0']}, {s['paths']['server1']}, "
                 f"record {s['paths']['client']}")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(train_mpc())
