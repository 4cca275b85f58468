"""The tier guard (mlassets_tests/tiers.py), run by a real pytest on a folder of its own: an
untiered module or a `services` test outside e2e stops the collection by name, and a test that
overrides its module's tier is selected by its own tier only."""

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
CONFTEST = """
from mlassets_tests.tiers import apply

def pytest_collection_modifyitems(config, items):
    apply(items)
"""
INI = """
[pytest]
markers =
    unit: u
    integration: i
    e2e: e
    services: s
"""


def collect(folder: Path, files: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    (folder / "conftest.py").write_text(CONFTEST)
    (folder / "pytest.ini").write_text(INI)
    for name, text in files.items():
        (folder / name).write_text(text)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
        cwd=folder,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


MIXED = """
import pytest
pytestmark = [pytest.mark.unit, pytest.mark.filterwarnings("ignore")]

def test_fast():
    pass

@pytest.mark.e2e
@pytest.mark.parametrize("n", [1, 2])
def test_slow(n):
    pass
"""


def test_a_test_overriding_its_modules_tier_is_selected_by_its_own_only(tmp_path):
    files = {"test_mixed.py": MIXED}
    unit = collect(tmp_path, files, "-m", "unit")
    assert unit.returncode == 0, unit.stdout + unit.stderr
    assert "test_mixed.py::test_fast" in unit.stdout and "test_slow" not in unit.stdout
    e2e = collect(tmp_path, files, "-m", "e2e")
    assert "test_mixed.py::test_slow[1]" in e2e.stdout and "test_fast" not in e2e.stdout


def test_an_untiered_module_and_a_services_test_outside_e2e_stop_the_collection(tmp_path):
    untiered = "def test_forgotten():\n    pass\n"
    services = "import pytest\npytestmark = [pytest.mark.integration, pytest.mark.services]\n"
    services += "def test_server():\n    pass\n"
    answer = collect(tmp_path, {"test_untiered.py": untiered, "test_server.py": services})
    said = answer.stdout + answer.stderr
    assert answer.returncode == 4, said  # a usage error: nothing runs
    assert "test_untiered.py: declares tiers none" in said, said
    assert "test_server.py::test_server: a `services` test is e2e, not integration" in said, said


# the one place a test may import a private Dagster module, and why: no public API checks each
# class an instance file names against its own config schema without building it, and building
# the postgres, celery or k8s profiles' classes needs their services
PRIVATE_DAGSTER = {"test_deploy.py"}


def test_no_test_imports_a_private_dagster_module_where_a_public_api_exists():
    import re

    private = re.compile(r"^\s*(?:from|import) (dagster\w*\._[\w.]*)", re.MULTILINE)
    found = {
        path.relative_to(ROOT).as_posix(): private.findall(path.read_text())
        for path in sorted((ROOT / "mlassets_tests").rglob("*.py"))
        if path.name not in PRIVATE_DAGSTER
    }
    assert {path: names for path, names in found.items() if names} == {}
