"""`make demo`'s runs in the UI: launched with the code location's origin, as the UI's own are.

The module's home (the bundled folder of specs, fraud data only) gets one run of
`fraud_detection_training_job` from `python -m mlassets.launch`, the command line `make demo`
runs, on small data and the fast search; then a real dagster-webserver serves that home. The
tests ask it, over GraphQL and with the queries its own pages send (copied from
dagster-webserver 1.13.27's bundle, `ui-core/src/...`), for what the job's Runs tab, Overview's
timeline and the asset's event history show. A run of `dg launch` on the same home, the control,
has no origin and is in neither the Runs tab nor the timeline. Then `make demo` itself, with
a job that fails at once, must stop with the log's tail and the summary, and its failed run is in
its job's Runs tab too.
"""

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from mlassets_tests.conftest import NAME, SERIAL_TRAINING, TEST_ROWS, CliWorld, empty_mlflow_store
from mlassets_tests.services import HOST, free_port, start, stop
from mlassets_tests.test_cli import ROOT
from mlassets_tests.test_clients import dg_env
from mlassets_tests.test_many_models import CHURN
from mlassets_tests.test_ui import BIN, REPOSITORIES, WORKSPACE, graphql, wait_for_graph

pytestmark = pytest.mark.e2e

JOB = f"{NAME}_training_job"
ROLLBACK_JOB = f"{NAME}_rollback_job"
REPOSITORY_LABEL_TAG = ".dagster/repository"  # DagsterTag.RepositoryLabelTag in the UI

# The job's Runs tab (pipelines/PipelineRunsFeedRoot.tsx) sends runs/useRunsFeedEntries.tsx's
# RunsFeedRootQuery (view RUNS) with the filter {pipelineName, tags: [.dagster/repository =
# <repository>@<location>]}; the fields are RunsFeedTableEntryFragment's, the table's.
RUNS_FEED = """
query RunsFeedRootQuery($limit: Int!, $cursor: String, $filter: RunsFilter, $view: RunsFeedView!) {
  runsFeedOrError(limit: $limit, cursor: $cursor, filter: $filter, view: $view) {
    __typename
    ... on RunsFeedConnection { cursor hasMore results { __typename id runStatus jobName
        tags { key value }
        ... on Run { repositoryOrigin { repositoryLocationName repositoryName } } } }
    ... on PythonError { message }
  }
}
"""
# Overview's timeline (runs/useRunsForTimeline.tsx): finished runs updated in the window; it
# draws a run only under its `repositoryOrigin` (a run without one is skipped).
COMPLETED_TIMELINE = """
query CompletedRunTimelineQuery($completedFilter: RunsFilter!, $limit: Int!, $cursor: String) {
  completed: runsOrError(filter: $completedFilter, limit: $limit, cursor: $cursor) {
    __typename
    ... on Runs { results { id pipelineName status startTime endTime
        repositoryOrigin { id repositoryName repositoryLocationName } } }
  }
}
"""
# An asset's Events tab (assets/usePaginatedAssetEvents.tsx, assets/useRecentAssetEvents.tsx):
# its event history, each event with its run and that run's origin (the job link).
ASSET_EVENTS = """
query RecentAssetEventsQuery($assetKey: AssetKeyInput!,
    $eventTypeSelectors: [AssetEventHistoryEventTypeSelector!]!, $limit: Int!,
    $before: String, $after: String, $cursor: String, $partitions: [String!]) {
  assetOrError(assetKey: $assetKey) {
    __typename
    ... on Asset { assetEventHistory(limit: $limit, afterTimestampMillis: $after,
        beforeTimestampMillis: $before, eventTypeSelectors: $eventTypeSelectors,
        cursor: $cursor, partitions: $partitions) {
      results { __typename
        ... on MaterializationEvent { runId runOrError { __typename ... on Run { id
            pipelineName repositoryOrigin { repositoryName repositoryLocationName } } } } } } }
  }
}
"""
EVENT_TYPES = ["MATERIALIZATION", "OBSERVATION", "FAILED_TO_MATERIALIZE"]  # the tab's default


def launch_command(job: str, config: str | None = None) -> list[str]:
    """The command line `make demo` runs for each job."""
    return [sys.executable, "-m", "mlassets.launch", "--job", job] + (
        ["-c", config] if config else []
    )


@dataclass
class Served:
    """The home where the demo's launch ran a training run, and a webserver on it."""

    world: CliWorld
    run_id: str
    launched_at: float
    port: int
    repo: str
    log: Path

    def query(self, query: str, variables: dict) -> dict:
        answer = graphql(self.port, query, variables)
        assert not answer.get("errors"), answer
        return answer["data"]

    def runs_tab(self, job: str) -> list[dict]:
        """What the job's Runs tab lists (its first page)."""
        label = f"{self.repo}@mlassets"
        variables = {
            "limit": 30,
            "filter": {
                "pipelineName": job,
                "tags": [{"key": REPOSITORY_LABEL_TAG, "value": label}],
            },
            "view": "RUNS",
        }
        feed = self.query(RUNS_FEED, variables)["runsFeedOrError"]
        assert feed["__typename"] == "RunsFeedConnection", feed
        return feed["results"]


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[Served]:
    from mlassets.synthetic import fraud_frame, write_frame

    root = tmp_path_factory.mktemp("demo")
    world = CliWorld(root, dg_env(root))
    assert empty_mlflow_store(root / "mlflow.db") == world.env["MLFLOW_TRACKING_URI"]
    write_frame(fraud_frame(TEST_ROWS, seed=7), world.source)
    config = world.config("fast", {f"{NAME}__candidate_model": {"config": SERIAL_TRAINING}})
    launched_at = time.time()
    proc = subprocess.run(
        launch_command(JOB, config),
        cwd=ROOT,  # as `make demo` runs it
        env=world.env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("run ") and last.endswith(f" of {JOB}: SUCCESS"), proc.stdout
    run_id = last.split()[1]

    port, log = free_port(), root / "webserver.log"
    webserver = [str(BIN / "dagster-webserver"), "-h", HOST, "-p", str(port), "-w", WORKSPACE]
    server = start(webserver, log, env=world.env, cwd=root)
    try:
        wait_for_graph(port, server=server, log=log)
        repos = graphql(port, REPOSITORIES)["data"]["repositoriesOrError"]["nodes"]
        (repo,) = [r["name"] for r in repos if r["location"]["name"] == "mlassets"]
        yield Served(world, run_id, launched_at, port, repo, log)
    finally:
        stop(server)


def test_the_launch_names_the_code_location_the_ui_serves():
    """The origin's location is the one `dg dev` (pyproject) and workspace.yaml name."""
    import tomllib

    from mlassets.launch import LOCATION

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["dg"]["project"]
    assert project["code_location_name"] == LOCATION
    workspace = yaml.safe_load((ROOT / "workspace.yaml").read_text())
    assert workspace["load_from"][0]["python_module"]["location_name"] == LOCATION


def test_a_demo_run_is_in_its_jobs_runs_tab_on_overview_and_in_asset_history(served):
    origin = {"repositoryName": served.repo, "repositoryLocationName": "mlassets"}

    # the job's Runs tab: the run, with the job's own tags, as a run the UI launched
    (entry,) = [e for e in served.runs_tab(JOB) if e["id"] == served.run_id]
    assert entry["__typename"] == "Run" and entry["runStatus"] == "SUCCESS", entry
    assert entry["repositoryOrigin"] == origin, entry
    # (found by its hidden `.dagster/repository` tag, which GraphQL does not list)
    tags = {t["key"]: t["value"] for t in entry["tags"]}
    assert tags["mlassets/training"] == NAME, tags
    # and not in the other model's job's
    assert served.runs_tab(f"{CHURN}_training_job") == []

    # Overview's timeline: the finished runs updated since the launch, drawn under their origin
    filters = {
        "statuses": ["FAILURE", "SUCCESS", "CANCELED"],
        "updatedAfter": served.launched_at - 1,
    }
    answer = served.query(COMPLETED_TIMELINE, {"completedFilter": filters, "limit": 500})
    runs = {r["id"]: r for r in answer["completed"]["results"]}
    assert served.run_id in runs, runs
    assert runs[served.run_id]["repositoryOrigin"]["repositoryName"] == served.repo
    assert runs[served.run_id]["repositoryOrigin"]["repositoryLocationName"] == "mlassets"
    assert runs[served.run_id]["pipelineName"] == JOB

    # each asset's event history: the materialization, linked to the run and its job
    for asset in ("raw_data", "evaluation_report", "production_model"):
        variables = {
            "assetKey": {"path": [NAME, asset]},
            "eventTypeSelectors": EVENT_TYPES,
            "limit": 100,
        }
        found = served.query(ASSET_EVENTS, variables)["assetOrError"]
        assert found["__typename"] == "Asset", (asset, found)
        events = [
            e
            for e in found["assetEventHistory"]["results"]
            if e["__typename"] == "MaterializationEvent"
        ]
        assert [e["runId"] for e in events] == [served.run_id], (asset, events)
        run = events[0]["runOrError"]
        assert run["pipelineName"] == JOB and run["repositoryOrigin"] == origin, (asset, run)


def test_a_dg_launch_run_is_listed_only_under_runs(served):
    """The control: what `make demo` ran before, `dg launch`, on the same home and webserver.
    Its run is in the Runs list but neither in its job's Runs tab nor, having no origin, on
    Overview's timeline: the queries above tell the two launches apart."""
    from mlassets_tests.test_clients import dg

    everywhere = {"limit": 30, "filter": {"pipelineName": ROLLBACK_JOB}, "view": "RUNS"}

    def listed() -> dict[str, dict]:
        feed = served.query(RUNS_FEED, everywhere)["runsFeedOrError"]
        return {e["id"]: e for e in feed["results"]}

    before = set(listed())
    proc = dg("launch", "--job", ROLLBACK_JOB, env=served.world.env)  # fails: no `previous`
    assert proc.returncode != 0 and "resulted in failure" in proc.stderr, proc.stderr[-3000:]
    (run_id,) = set(listed()) - before
    assert listed()[run_id]["runStatus"] == "FAILURE"
    assert listed()[run_id]["repositoryOrigin"] is None
    assert run_id not in {e["id"] for e in served.runs_tab(ROLLBACK_JOB)}
    filters = {"statuses": ["FAILURE"], "updatedAfter": served.launched_at - 1}
    answer = served.query(COMPLETED_TIMELINE, {"completedFilter": filters, "limit": 500})
    (run,) = [r for r in answer["completed"]["results"] if r["id"] == run_id]
    assert run["repositoryOrigin"] is None, run  # what the timeline skips


def test_a_failed_run_stops_make_demo_with_the_logs_tail_and_the_summary(served):
    """`make demo` as written, on the module's home, with a job that fails at once: the rollback
    job, with no `previous` version. The install step is taken as done (`-o`): this venv."""
    venv = Path(sys.prefix)
    installed = venv / "bin" / ".installed"
    proc = subprocess.run(
        ["make", "--no-print-directory", "-o", str(installed), "demo", f"VENV={venv}"]
        + [f"DEMO_JOBS={ROLLBACK_JOB}", "DEMO_ROWS=2000"],
        cwd=ROOT,
        env=served.world.env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = proc.stdout
    assert proc.returncode != 0, out[-3000:] + proc.stderr[-2000:]
    assert f"launching {ROLLBACK_JOB}" in out, out[-3000:]
    # the tail ends with the launch's own lines: the run, its status and why it failed
    tail, summary = out.split(f"launching {ROLLBACK_JOB}\n", 1)[1].split(f"== {NAME}\n", 1)
    assert f" of {ROLLBACK_JOB}: FAILURE\n" in tail, tail
    assert (
        f"  step {NAME}__rollback_production failed: model {NAME} has no 'previous' version "
        "to roll back to (production is version 1)"
    ) in tail, tail
    failed_id = tail.split(f" of {ROLLBACK_JOB}: FAILURE")[0].rsplit("run ", 1)[1]
    # the summary follows, in the README's order, production read from the registry
    assert f"\n== {CHURN}\n" in summary, out[-3000:]
    fraud = summary.split(f"== {CHURN}\n")[0]
    assert f"run {served.run_id[:8]}: SUCCESS" in fraud
    assert f"production model: {NAME} version 1\n" in fraud
    assert (
        f"version 1 serves since its promotion, the model's first (trained by run {served.run_id[:8]})"
        in fraud
    )
    # a run of the rollback job is no training run: nothing to say production was kept for
    assert "production kept" not in fraud

    # that failed run is in its job's Runs tab too
    (entry,) = [e for e in served.runs_tab(ROLLBACK_JOB) if e["id"] == failed_id]
    assert entry["runStatus"] == "FAILURE", entry


def test_a_gate_failure_ends_make_demo_with_one_block_saying_what_to_change(served, tmp_path):
    """`make demo DEMO_CONFIG=...` with a gate no model passes: the demo stops with the run, the
    failed gate's figure against its limit and the YAML that would accept the model, then the
    summary; none of the run's DEBUG log in between (that is in demo.log)."""
    venv = Path(sys.prefix)
    installed = venv / "bin" / ".installed"
    config = tmp_path / "strict.yaml"
    ops = {
        f"{NAME}__candidate_model": {"config": SERIAL_TRAINING},
        f"{NAME}__evaluation_report": {"config": {"min_f1": 0.999}},
    }
    config.write_text(yaml.safe_dump({"ops": ops}))
    proc = subprocess.run(
        ["make", "--no-print-directory", "-o", str(installed), "demo", f"VENV={venv}"]
        + [f"DEMO_JOBS={JOB}", "DEMO_ROWS=2000", f"DEMO_CONFIG={config}"],
        cwd=ROOT,
        env=served.world.env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    out = proc.stdout
    assert proc.returncode != 0, out[-3000:] + proc.stderr[-2000:]
    block = out.split(f"launching {JOB}\n", 1)[1].split("full log: ", 1)[0]
    assert f" of {JOB}: FAILURE\n" in block, block
    assert "gate(s) failed, so nothing was registered:" in block, block
    assert "< 0.999 (min_f1) [min_f1 from the run config]" in block, block
    assert "  gates: {min_f1: 0." in block and "fraud.yaml" in block, block
    assert f"  ops: {{{NAME}__evaluation_report: {{config: {{min_f1: 0." in block, block
    assert "DEBUG" not in block and len(block.splitlines()) <= 15, block
