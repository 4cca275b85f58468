"""No process-wide switch in library code: `os.environ` and MLflow's global URIs are written only
where a process starts (or, listed below with why, where nothing else can), so a long-lived
process (the daemon's sensors, the webserver) never sees one thread's setting in another."""

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

PACKAGE = Path(__file__).resolve().parents[1] / "mlassets"
WRITES = re.compile(
    r"os\.environ\[[^\]]+\]\s*=(?!=)|environ\.(?:pop|setdefault|update|clear)\(|os\.putenv\("
    r"|set_tracking_uri\(|set_registry_uri\(|\._registry_uri\b"
)
# file -> how many writes it may hold, and why
ALLOWED = {
    # import-time defaults of every mlassets process (telemetry off, MLflow's retry settings)
    "settings.py": 6,
    # `python -m mlassets.launch` / `python -m mlassets.summary`: their own main(), at start-up
    "launch.py": 1,
    "summary.py": 1,
    # the `mlflow` resource, around a run's step in the process the run owns, set and restored:
    # the owner's identity for the processes the step starts (crash recovery), and MLflow's
    # tracking URI for its fluent logging (log_model has no client argument)
    "resources.py": 5,
}


def test_library_code_writes_no_process_wide_setting():
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        code = "\n".join(
            line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")
        )
        hits = WRITES.findall(code)
        if hits:
            found[path.relative_to(PACKAGE).as_posix()] = len(hits)
    assert found == ALLOWED
