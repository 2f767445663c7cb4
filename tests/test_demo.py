"""ppfr demo: the end-to-end run on a few LFW people (embedded now, not from the cache), and its message
when LFW is missing."""
from __future__ import annotations

import json

from click.testing import CliRunner

from ppfr.demo.cli import demo
from ppfr.demo.lfw import format_report
from ppfr.recognition.cli import recognize


def test_demo_trains_on_shares_recognises_and_reports(lfw_dir, tmp_path):
    model = tmp_path / "model"
    args = ["--lfw", lfw_dir, "--people", 4, "--max-images", 15, "--background", 30, "--strangers", 8,
            "--epochs", 10, "--no-cache", "--seed", 1, "-o", model, "--json", "--quiet"]
    result = CliRunner().invoke(demo, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    r = json.loads(result.stdout)
    assert len(r["classes"]) == 5 and r["classes"][-1] == "unknown"
    assert r["embedding"]["source"] == "computed" and r["embedding"]["images"] >= 4 * 12 + 25
    assert r["queries"] == {"known": 12, "strangers": 8, "no_face": r["queries"]["no_face"]}
    assert r["mpc"]["known_correct"] >= 0.75 and r["mpc"]["strangers_rejected"] >= 0.6
    assert r["same_decision"] >= 0.9
    assert r["training"]["per_server"]["bytes_sent"] > 0 and r["training"]["per_server"]["rounds"] > 0
    rec = r["recognition"]
    assert rec["frames"] == 20 and rec["mpc_batches"] == rec["faces"] >= 19    # one face and one batch per photo
    assert rec["per_batch"]["rounds"] >= 3 and rec["ms_per_face"]["mpc"] > 0   # the label under MPC

    # the model it kept is an ordinary model for `ppfr recognize`
    photo = lfw_dir / "images_deepfunneled" / r["classes"][0] / f"{r['classes'][0]}_0001.jpg"
    out = CliRunner().invoke(recognize, ["-m", str(model), str(photo), "--quiet"])
    assert out.exit_code == 0 and out.stdout.split(",")[0] == str(photo)

    text = format_report(r)
    assert "unknown faces rejected" in text and "MPC training" in text and "kB" in text


def test_demo_without_lfw_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PPFR_LFW", str(tmp_path / "nowhere"))
    for args in ([], ["--lfw", str(tmp_path)]):
        result = CliRunner().invoke(demo, args + ["--quiet"])
        assert result.exit_code != 0
        assert "no LFW images under" in result.output and "vis-www.cs.umass.edu/lfw" in result.output
        assert "PPFR_LFW" in result.output and "--lfw" in result.output
