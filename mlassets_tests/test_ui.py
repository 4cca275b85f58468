"""The UI's view of the code location: dagster-webserver serves the graph over GraphQL."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

from mlassets_tests.conftest import cli_world_with_version_1
from mlassets_tests.test_cli import ROOT, cli_env
from mlassets_tests.test_selections import USELESS

BIN = Path(sys.executable).parent

QUERY = """
{ assetNodes { assetKey { path } groupName
    assetChecksOrError { ... on AssetChecks { checks { name blocking } } } } }
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graphql(port: int, query: str, variables: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def wait_for_graph(port: int, timeout: float = 120) -> dict:
    """Poll the webserver until it serves the asset graph; its `data` for QUERY."""
    deadline, data = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            data = graphql(port, QUERY)["data"]
            if data["assetNodes"]:
                return data
        except OSError:
            pass
        time.sleep(1)
    raise AssertionError(f"webserver did not serve the asset graph in {timeout:.0f} s")


def test_webserver_shows_groups_and_blocking_checks(tmp_path):
    port = free_port()
    server = subprocess.Popen(
        [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port)]
        + ["-w", str(ROOT / "workspace.yaml")],
        cwd=tmp_path,
        env=cli_env(tmp_path, None),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        data = wait_for_graph(port)
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


# What the UI sends, copied from dagster-webserver 1.13.27's bundle: the Materialize button
# (`executionParamsForAssetJob`) and the launchpad it opens for config both fire this mutation.
LAUNCH = """
mutation LaunchPipelineExecution($executionParams: ExecutionParams!) {
  launchPipelineExecution(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { id pipelineName } }
    ... on PipelineNotFoundError { message }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on PythonError { message stack }
  }
}
"""
REPOSITORIES = """
{ repositoriesOrError { ... on RepositoryConnection { nodes { name location { name } } } } }
"""
# The button's check selection: every check of the selected assets that this job can run.
ASSET_CHECKS = """
query ($keys: [AssetKeyInput!]) { assetNodes(assetKeys: $keys) { assetKey { path }
    assetChecksOrError { __typename ... on AssetChecks { checks { name jobNames } } } } }
"""
STATUS = "query ($id: ID!) { runOrError(runId: $id) { __typename ... on Run { status } } }"
LOGS = """
query ($id: ID!, $after: String) { logsForRun(runId: $id, afterCursor: $after) {
    __typename
    ... on EventConnection { cursor hasMore events { __typename
        ... on ExecutionStepFailureEvent { stepKey error { message } } } } } }
"""
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}


def start(cmd: list[str], env: dict, cwd: Path, log: Path) -> subprocess.Popen:
    """A server in its own process group (it spawns code servers and run workers)."""
    with open(log, "w") as out:
        return subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM the process group, then SIGKILL whatever is left after 30 s."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


def tail(*logs: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in logs if p.exists())


def test_a_partial_selection_launched_like_the_materialize_button_is_refused(tmp_path):
    (tmp_path / "world").mkdir()  # cli_env makes only dagster_home inside it
    world = cli_world_with_version_1(tmp_path / "world")
    before = world.registry_state()
    assert before == (["1"], "1")
    # `make dev` is `dagster dev`: a webserver plus a daemon, on the home's dagster.yaml with its
    # QueuedRunCoordinator. So this keeps that dagster.yaml and starts the real daemon beside the
    # webserver: the run is queued by the webserver and launched by the daemon, as for a user.
    # (Swapping in the DefaultRunCoordinator would test a set-up nobody runs.)
    port = free_port()
    workspace = str(ROOT / "workspace.yaml")
    logs = [tmp_path / "webserver.log", tmp_path / "daemon.log"]
    servers: list[subprocess.Popen] = []
    try:
        servers.append(
            start(
                [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port)]
                + ["-w", workspace],
                world.env,
                world.root,
                logs[0],
            )
        )
        servers.append(
            start(
                [str(BIN / "dagster-daemon"), "run", "-w", workspace],
                world.env,
                world.root,
                logs[1],
            )
        )
        wait_for_graph(port)

        repos = graphql(port, REPOSITORIES)["data"]["repositoriesOrError"]["nodes"]
        (repo,) = [r["name"] for r in repos if r["location"]["name"] == "mlassets"]
        selected = ["candidate_model", "registered_model", "staging_model", "production_model"]
        keys = [{"path": [name]} for name in selected]
        nodes = graphql(port, ASSET_CHECKS, {"keys": keys})["data"]["assetNodes"]
        assert sorted(n["assetKey"]["path"][0] for n in nodes) == sorted(selected)
        job = "__ASSET_JOB"
        checks = [
            {"name": c["name"], "assetKey": {"path": n["assetKey"]["path"]}}
            for n in nodes
            if n["assetChecksOrError"]["__typename"] == "AssetChecks"
            for c in n["assetChecksOrError"]["checks"]
            if not c["jobNames"] or job in c["jobNames"]
        ]
        params = {
            "mode": "default",
            "executionMetadata": {"tags": []},
            # the launchpad sends its YAML editor's text
            "runConfigData": yaml.safe_dump({"ops": {"candidate_model": {"config": USELESS}}}),
            "selector": {
                "repositoryLocationName": "mlassets",
                "repositoryName": repo,
                "pipelineName": job,
                "assetSelection": keys,
                "assetCheckSelection": checks,
            },
        }
        launched = graphql(port, LAUNCH, {"executionParams": params})
        result = launched["data"]["launchPipelineExecution"]
        assert result["__typename"] == "LaunchRunSuccess", launched
        run_id = result["run"]["id"]

        deadline, status = time.monotonic() + 180, None
        while time.monotonic() < deadline:
            status = graphql(port, STATUS, {"id": run_id})["data"]["runOrError"]["status"]
            if status in FINISHED:
                break
            time.sleep(1)
        assert status == "FAILURE", (status, tail(*logs))

        failures, after = [], None
        while True:
            page = graphql(port, LOGS, {"id": run_id, "after": after})["data"]["logsForRun"]
            assert page["__typename"] == "EventConnection", page
            failures += [
                e for e in page["events"] if e["__typename"] == "ExecutionStepFailureEvent"
            ]
            after = page["cursor"]
            if not page["hasMore"]:
                break
    finally:
        for server in reversed(servers):
            stop(server)

    assert [f["stepKey"] for f in failures] == ["registered_model"], failures
    message = failures[0]["error"]["message"]
    assert "not registering fraud_detection" in message, message
    assert "evaluation_report judged candidate" in message, message
    assert world.registry_state() == before
