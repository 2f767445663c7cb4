"""README.md against the tree: its figures table is what benchmarks/report.py makes of the committed
results (benchmarks/results/*.json)."""
from __future__ import annotations

import importlib.util
import json

import pytest

from conftest import REPO_ROOT

README = REPO_ROOT / "README.md"


@pytest.fixture(scope="module")
def report():
    spec = importlib.util.spec_from_file_location("report", REPO_ROOT / "benchmarks" / "report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_figures_table_is_generated_from_the_committed_results(report):
    results = report.load_results()
    assert results, "no benchmarks/results/*.json"
    text = README.read_text()
    assert text == report.with_table(text, results), \
        "README.md's figures table differs from the results: run python benchmarks/report.py"


def test_every_result_says_where_it_comes_from(report):
    for name, record in report.load_results().items():
        assert record.get("benchmark") and name.startswith(record["benchmark"]), name
        assert record.get("source"), f"{name}.json has no source"
        if record["source"] == "measured":
            assert len(record["load"]) == 3 and record["date"] and record["command"], name


def test_the_table_follows_the_results(report, tmp_path):
    # a changed figure changes the table, so the check above can fail
    results = report.load_results()
    changed = json.loads(json.dumps(results))
    changed["mpc_ops"]["ops"]["mul 100x100"]["mpc_ms"] = 12345.6
    text = README.read_text()
    assert "12,345.6 ms" in report.with_table(text, changed)
    assert report.with_table(text, changed) != text
