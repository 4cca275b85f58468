"""One home for the status vocabulary (issue 24): no module of `mlassets` spells a status string,
a run-owner tag or the owner variable except the module that owns it; everything else imports.

A copy is how the vocabulary drifted before: three modules each had their own `pending` and
`mlassets.status`, and a test had to check that they still agreed. The scan reads every source
file's syntax tree, so a word in a docstring or a comment is not a copy; a string constant is.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import mlassets

pytestmark = pytest.mark.unit

PACKAGE = Path(mlassets.__file__).parent

# spelled out here on purpose: these are the values stored in MLflow, and must stay these
HOMES = {
    "ml/status.py": {
        "mlassets.status",
        "pending",
        "registered",
        "abandoned",
        "rolled_back",
        "mlassets.abandoned_reason",
        "mlassets.failed_reason",
        "RUNNING",
        "FINISHED",
        "FAILED",
        "attributes.status = 'RUNNING'",
    },
    "ml/owner.py": {
        "mlassets.owner",
        "mlassets.host",
        "mlassets.pid",
        "MLASSETS_OWNER",
        "MLASSETS_OWNER_PID",
    },
}


def copies() -> list[str]:
    """`path:line: 'word'` for every vocabulary string constant outside its home module."""
    home_of = {word: home for home, words in HOMES.items() for word in words}
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = path.relative_to(PACKAGE).as_posix()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
                continue
            home = home_of.get(node.value)
            if home is not None and home != name:
                found.append(f"{name}:{node.lineno}: {node.value!r} (import it from {home})")
    return found


def test_the_vocabulary_has_one_home():
    assert copies() == []


def test_the_homes_define_what_the_scan_looks_for():
    """The scan finds what it is meant to find: each home holds each of its words."""
    for home, words in HOMES.items():
        tree = ast.parse((PACKAGE / home).read_text())
        constants = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)}
        # the RUNNING filter is an f-string built from RUN_RUNNING, so it is checked by value
        if home == "ml/status.py":
            from mlassets.ml.status import RUNNING_FILTER

            constants.add(RUNNING_FILTER)
        assert words <= constants, f"{home} lacks {sorted(words - constants)}"
