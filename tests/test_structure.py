"""The code's shape, as the brief asks for it: the README's layout table matches the tree, each command
lives in its package's cli.py, and no function in ppfr/ is over 60 lines."""
from __future__ import annotations

import ast
import re

from conftest import REPO_ROOT

PPFR = REPO_ROOT / "ppfr"
MAX_FUNCTION_LINES = 60

# Functions allowed over MAX_FUNCTION_LINES for now, as "path:qualified name" -> why. Meant to be empty:
# an entry that is no longer too long fails the test, so that the list only ever shrinks.
LONG_FUNCTIONS: dict[str, str] = {}


def packages() -> set[str]:
    return {p.parent.name for p in PPFR.glob("*/__init__.py")}


def readme_layout_paths() -> set[str]:
    text = (REPO_ROOT / "README.md").read_text()
    section = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"`ppfr/([A-Za-z_][A-Za-z0-9_]*)/`", section))


def test_readme_layout_lists_every_package_and_only_those():
    listed, present = readme_layout_paths(), packages()
    assert present, "no packages found under ppfr/"
    assert listed - present == set(), f"README's layout lists packages that do not exist: {listed - present}"
    assert present - listed == set(), f"packages missing from README's layout table: {present - listed}"


def test_every_command_lives_in_its_package_cli():
    from ppfr.cli import COMMANDS

    for name, target in COMMANDS.items():
        module, _ = target.split(":")
        parts = module.split(".")
        assert len(parts) == 3 and parts[0] == "ppfr" and parts[2] == "cli" and parts[1] in packages(), \
            f"`ppfr {name}` is defined in {module}, not in a package's cli.py"
    top_level = {p.stem for p in PPFR.glob("*.py")} - {"__init__", "cli", "config", "atomic", "failures", "limits"}
    assert not top_level, f"modules at the top of ppfr/ (commands belong in a package): {top_level}"


def function_lengths():
    """(path:qualified name, lines from `def` to the last line of the body) for every function in ppfr/.
    Decorators are not counted: a click command's option list is declarations, not code."""
    out = {}
    for path in sorted(PPFR.rglob("*.py")):
        rel = path.relative_to(REPO_ROOT).as_posix()

        def walk(node, prefix):
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    name = f"{prefix}{child.name}"
                    if not isinstance(child, ast.ClassDef):
                        out[f"{rel}:{name}"] = child.end_lineno - child.lineno + 1
                    walk(child, name + ".")

        walk(ast.parse(path.read_text(), str(path)), "")
    return out


def test_no_function_is_over_60_lines():
    lengths = function_lengths()
    assert len(lengths) > 100, "the walk found too few functions"
    too_long = {k: n for k, n in lengths.items() if n > MAX_FUNCTION_LINES and k not in LONG_FUNCTIONS}
    assert not too_long, f"functions over {MAX_FUNCTION_LINES} lines: {too_long}"
    stale = {k for k in LONG_FUNCTIONS if lengths.get(k, 0) <= MAX_FUNCTION_LINES}
    assert not stale, f"no longer over {MAX_FUNCTION_LINES} lines (remove from LONG_FUNCTIONS): {stale}"
