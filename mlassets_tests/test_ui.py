"""The UI's view of the code location: dagster-webserver serves the graph over GraphQL."""

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from mlassets_tests.test_cli import ROOT, cli_env

QUERY = """
{ assetNodes { assetKey { path } groupName
    assetChecksOrError { ... on AssetChecks { checks { name blocking } } } } }
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_webserver_shows_groups_and_blocking_checks(tmp_path):
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port)]
        + ["-w", str(ROOT / "workspace.yaml")],
        cwd=tmp_path,
        env=cli_env(tmp_path, None),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline, data = time.monotonic() + 120, None
        while time.monotonic() < deadline:
            try:
                data = graphql(port, QUERY)["data"]
                if data["assetNodes"]:
                    break
            except OSError:
                pass
            time.sleep(1)
        assert data and data["assetNodes"], "webserver did not serve the asset graph in 120 s"
    finally:
        server.terminate()
        server.wait(timeout=30)

    nodes = {n["assetKey"]["path"][0]: n for n in data["assetNodes"]}
    groups = {name: n["groupName"] for name, n in nodes.items()}
    assert groups["raw_data"] == "data" and groups["test_set"] == "features"
    assert groups["candidate_model"] == "training" and groups["evaluation_report"] == "evaluation"
    assert groups["production_model"] == "registry" and groups["drift_report"] == "monitoring"
    checks = {
        c["name"]: c["blocking"]
        for n in data["assetNodes"]
        for c in (n["assetChecksOrError"] or {}).get("checks", [])
    }
    for name in ("not_null", "f1_gate", "beats_production", "fairness", "disjoint_and_stratified"):
        assert checks[name] is True, name
