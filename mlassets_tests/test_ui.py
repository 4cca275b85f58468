"""The UI, launched and looked at: dagster-webserver and dagster-daemon as `make dev` runs them.

One webserver and one daemon serve every test of this module (starting them costs ~20 s on 2
cores). They run on the home's own dagster.yaml with its QueuedRunCoordinator, so a launch is
queued by the webserver and started by the daemon, as for a user of `make dev`. The module's
world starts empty but for its data; `training_job` is launched through GraphQL exactly as the
job page's "Materialize all" button does and puts version 1 behind `production`. The tests read
that run back over GraphQL, launch a partial selection beside it, and look at the pages with
Debian's headless Chromium (`make browser`; Selenium drives it through Debian's chromedriver).

`python -m mlassets_tests.test_ui docs` (`make screenshots`) makes the README's pictures the same
way, in a temporary home.
"""

import contextlib
import json
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from mlassets_tests.conftest import TEST_ROWS, CliWorld, run_config
from mlassets_tests.services import (
    CHROMEDRIVER,
    CHROMIUM,
    HOST,
    chromium,
    free_port,
    log_tail,
    page_text,
    save_screenshot,
    start,
    stop,
    wait_for_text,
    wait_until_still,
)
from mlassets_tests.test_cli import ROOT, cli_env
from mlassets_tests.test_selections import USELESS

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
WORKSPACE = str(ROOT / "workspace.yaml")
# the F1 floor the launchpad run sets (EvaluationConfig.min_f1), so f1_gate judges against a limit
F1_FLOOR = 0.5

QUERY = """
{ assetNodes { assetKey { path } groupName
    assetChecksOrError { ... on AssetChecks { checks { name blocking } } } } }
"""


def graphql(port: int, query: str, variables: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"http://{HOST}:{port}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def wait_for_graph(port: int, timeout: float = 120, server=None, log: Path | None = None) -> dict:
    """Poll the webserver until it serves the asset graph; its `data` for QUERY. Fails at once,
    with its log, if `server` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server is not None and server.poll() is not None:
            raise AssertionError(f"webserver exited with {server.returncode}:\n{log_tail(log)}")
        try:
            data = graphql(port, QUERY)["data"]
            if data["assetNodes"]:
                return data
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"webserver did not serve the asset graph in {timeout:.0f} s")


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
# The button's check selection: every check of the selected assets that this job can run. The
# job page's "Materialize all" selects the job's assets (`assetNodes(pipeline: ...)`).
ASSET_CHECKS = """
query ($keys: [AssetKeyInput!], $pipeline: PipelineSelector) {
  assetNodes(assetKeys: $keys, pipeline: $pipeline) { assetKey { path }
    assetChecksOrError { __typename ... on AssetChecks { checks { name jobNames } } } } }
"""
STATUS = "query ($id: ID!) { runOrError(runId: $id) { __typename ... on Run { status } } }"
LOGS = """
query ($id: ID!, $after: String) { logsForRun(runId: $id, afterCursor: $after) {
    __typename
    ... on EventConnection { cursor hasMore events { __typename
        ... on ExecutionStepFailureEvent { stepKey error { message } } } } } }
"""
# What the asset page shows: each check's latest execution, and the latest materialization.
CHECK_RESULTS = """
query ($keys: [AssetKeyInput!]) { assetNodes(assetKeys: $keys) { assetKey { path }
    assetChecksOrError { ... on AssetChecks { checks { name blocking
        executionForLatestMaterialization { runId status
            evaluation { success severity description } } } } } } }
"""
MATERIALIZATION = """
query ($key: AssetKeyInput!) { assetOrError(assetKey: $key) { __typename
    ... on Asset { assetMaterializations(limit: 1) { runId metadataEntries { label __typename
        ... on FloatMetadataEntry { floatValue } ... on IntMetadataEntry { intValue }
        ... on TextMetadataEntry { text } } } } } }
"""
SHOULD_SHOW_NUX = "{ shouldShowNux }"
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}


@dataclass
class UI:
    """A webserver and a daemon on one CLI world, and the training run launched through them."""

    world: CliWorld
    port: int
    repo: str
    logs: list[Path]
    run_id: str
    status: str
    seconds: float  # from the launch to the run's end

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def query(self, query: str, variables: dict | None = None) -> dict:
        answer = graphql(self.port, query, variables)
        assert not answer.get("errors"), answer
        return answer["data"]

    def tail(self) -> str:
        return "\n".join(f"--- {p.name}\n{log_tail(p, 3000)}" for p in self.logs)

    def launch(self, job: str, keys: list[dict] | None, run_config: dict | None) -> str:
        """Launch like the UI: the Materialize button with `runConfigData` '{}', or its
        launchpad (shift-click) with the YAML editor's text. `keys=None` is the job page's
        "Materialize all": every asset of the job. Returns the run id."""
        pipeline = {"repositoryLocationName": "mlassets", "repositoryName": self.repo}
        by = {"keys": keys} if keys is not None else {"pipeline": {**pipeline, "pipelineName": job}}
        nodes = self.query(ASSET_CHECKS, by)["assetNodes"]
        assert nodes, by
        checks = [  # getAssetCheckHandleInputs
            {"name": c["name"], "assetKey": {"path": n["assetKey"]["path"]}}
            for n in nodes
            if n["assetChecksOrError"]["__typename"] == "AssetChecks"
            for c in n["assetChecksOrError"]["checks"]
            if not c["jobNames"] or job in c["jobNames"]
        ]
        params = {
            "mode": "default",
            "executionMetadata": {"tags": []},
            "runConfigData": yaml.safe_dump(run_config) if run_config else "{}",
            "selector": {
                **pipeline,
                "pipelineName": job,
                "assetSelection": [{"path": n["assetKey"]["path"]} for n in nodes],
                "assetCheckSelection": checks,
            },
        }
        launched = self.query(LAUNCH, {"executionParams": params})
        result = launched["launchPipelineExecution"]
        assert result["__typename"] == "LaunchRunSuccess", launched
        return result["run"]["id"]

    def wait(self, run_id: str, timeout: float = 300) -> str:
        """Poll the run until it finishes (the daemon dequeues and launches it); its status."""
        deadline, status = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            status = self.query(STATUS, {"id": run_id})["runOrError"]["status"]
            if status in FINISHED:
                return status
            time.sleep(0.5)
        raise AssertionError(f"run {run_id} still {status} after {timeout:.0f} s:\n{self.tail()}")


@contextlib.contextmanager
def ui_with_a_training_run(root: Path) -> Iterator[UI]:
    """A world with only its data; a webserver and a daemon on it; `training_job` launched
    through GraphQL like the job page's "Materialize all" and polled to its end. Both servers
    are stopped (their process groups) however this ends."""
    from dagster import DagsterInstance

    from mlassets.synthetic import fraud_frame, write_frame

    world = CliWorld(root, cli_env(root, None))
    write_frame(fraud_frame(TEST_ROWS, seed=7), world.source)
    # A new home's SQLite storage is created by whichever process opens it first: a webserver
    # and a daemon started together both create it, and alembic then finds two heads in its
    # version table ("has more than one head present"), so no code location loads. Create it once.
    DagsterInstance.from_config(world.env["DAGSTER_HOME"]).dispose()
    port = free_port()
    logs = [root / "webserver.log", root / "daemon.log"]
    servers = []
    try:
        webserver = [str(BIN / "dagster-webserver"), "-h", HOST, "-p", str(port), "-w", WORKSPACE]
        servers.append(start(webserver, logs[0], env=world.env, cwd=root))
        daemon = [str(BIN / "dagster-daemon"), "run", "-w", WORKSPACE]
        servers.append(start(daemon, logs[1], env=world.env, cwd=root))
        wait_for_graph(port, server=servers[0], log=logs[0])
        repos = graphql(port, REPOSITORIES)["data"]["repositoriesOrError"]["nodes"]
        (repo,) = [r["name"] for r in repos if r["location"]["name"] == "mlassets"]
        ui = UI(world, port, repo, logs, run_id="", status="", seconds=0.0)
        started = time.monotonic()
        # "Materialize all" shift-clicked: the launchpad, with the fast search as its YAML (the
        # default search alone takes a minute here; the button sends '{}' and runs it) and an F1
        # floor, so the Checks tab shows a gate judged against a limit the user set
        ui.run_id = ui.launch("training_job", None, run_config(gates={"min_f1": F1_FLOOR}))
        ui.status = ui.wait(ui.run_id)
        ui.seconds = time.monotonic() - started
        yield ui
    finally:
        for server in reversed(servers):
            stop(server)


@pytest.fixture(scope="module")
def ui(tmp_path_factory) -> Iterator[UI]:
    with ui_with_a_training_run(tmp_path_factory.mktemp("ui")) as launched:
        yield launched


@pytest.fixture
def trained(ui) -> UI:
    """The module's UI, once its training run succeeded (else every test says why)."""
    assert ui.status == "SUCCESS", f"training_job ended {ui.status}:\n{ui.tail()}"
    return ui


def test_webserver_shows_groups_and_blocking_checks(ui):
    data = ui.query(QUERY)
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


def test_training_job_launched_like_materialize_all_succeeds_and_reads_back(trained):
    ui = trained
    assert ui.world.registry_state() == (["1"], "1")

    names = ["raw_data", "test_set", "evaluation_report", "staging_model"]
    nodes = ui.query(CHECK_RESULTS, {"keys": [{"path": [n]} for n in names]})["assetNodes"]
    results = {
        (n["assetKey"]["path"][0], c["name"]): c["executionForLatestMaterialization"]
        for n in nodes
        for c in n["assetChecksOrError"]["checks"]
    }
    checks_of = {a: sorted(c for b, c in results if b == a) for a in names}
    gates = ["accuracy_gate", "f1_gate", "pr_auc_gate", "precision_gate", "recall_gate"]
    gates += ["roc_auc_gate", "beats_production", "fairness"]
    assert set(gates) <= set(checks_of["evaluation_report"]), checks_of
    assert "not_null" in checks_of["raw_data"] and len(checks_of["raw_data"]) >= 6, checks_of
    assert checks_of["test_set"] == ["disjoint_and_stratified"], checks_of
    for (asset, check), execution in results.items():
        assert execution is not None, f"{asset}/{check} never ran in {ui.run_id}"
        assert execution["runId"] == ui.run_id, (asset, check, execution)
        assert execution["status"] == "SUCCEEDED", (asset, check, execution)
        assert execution["evaluation"]["success"] is True, (asset, check, execution)
    f1 = results[("evaluation_report", "f1_gate")]["evaluation"]
    assert f1["severity"] == "ERROR" and "f1" in f1["description"], f1

    answer = ui.query(MATERIALIZATION, {"key": {"path": ["evaluation_report"]}})
    (materialization,) = answer["assetOrError"]["assetMaterializations"]
    assert materialization["runId"] == ui.run_id
    entries = {e["label"]: e for e in materialization["metadataEntries"]}
    for metric in ("accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc"):
        assert entries[metric]["__typename"] == "FloatMetadataEntry", entries[metric]
    assert 0.80 <= entries["f1"]["floatValue"] <= 1.0, entries["f1"]  # the default F1 gate
    assert entries["gates"]["text"] == "all passed", entries["gates"]
    assert entries["production_version"]["text"] == "none", entries["production_version"]
    assert entries["test_rows"]["intValue"] == round(TEST_ROWS * 0.2), entries["test_rows"]


def test_a_partial_selection_launched_like_the_materialize_button_is_refused(trained):
    # The module's world has version 1 behind production, put there by training_job launched
    # through this webserver and daemon; a run of the useless candidate plus the registry assets
    # must register nothing.
    ui = trained
    before = ui.world.registry_state()
    assert before == (["1"], "1")
    selected = ["candidate_model", "registered_model", "staging_model", "production_model"]
    # the launchpad sends its YAML editor's text
    run_id = ui.launch(
        "__ASSET_JOB",
        [{"path": [name]} for name in selected],
        {"ops": {"candidate_model": {"config": USELESS}}},
    )
    status = ui.wait(run_id)
    assert status == "FAILURE", (status, ui.tail())

    failures, after = [], None
    while True:
        page = ui.query(LOGS, {"id": run_id, "after": after})["logsForRun"]
        assert page["__typename"] == "EventConnection", page
        failures += [e for e in page["events"] if e["__typename"] == "ExecutionStepFailureEvent"]
        after = page["cursor"]
        if not page["hasMore"]:
            break

    assert [f["stepKey"] for f in failures] == ["registered_model"], failures
    message = failures[0]["error"]["message"]
    assert "not registering fraud_detection" in message, message
    assert "evaluation_report judged candidate" in message, message
    assert ui.world.registry_state() == before


# --- the pages, in a browser ----------------------------------------------------------------------
GROUPS = ["data", "features", "training", "evaluation", "registry", "monitoring"]
ASSETS = ["raw_data", "features", "train_set", "validation_set", "test_set", "candidate_model"]
ASSETS += ["evaluation_report", "registered_model", "staging_model", "production_model"]
ASSETS += ["recent_data", "drift_report", "scored_batches"]
EVALUATION_CHECKS = ["accuracy_gate", "beats_baseline", "beats_production", "f1_gate", "fairness"]
EVALUATION_CHECKS += ["pr_auc_gate", "precision_gate", "recall_gate", "roc_auc_gate"]
# the "nux" dialog dagster-webserver shows on 127.0.0.1 and localhost, 1 s after it asks the
# server `shouldShowNux` (dagster-webserver 1.13.27's CommunityNux)
COMMUNITY_POPUP = "Join the Dagster community"


def open_asset_graph(driver, ui: UI) -> str:
    """Lineage ("Global asset lineage"): the groups come folded; fold the asset tree beside the
    graph (its panel button) and unfold every group with the graph's shortcut Alt+E, as a user
    does. Its rendered text, once every asset shows and the graph stopped zooming."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"{ui.url}/asset-groups")
    wait_for_text(driver, ["Global asset lineage", "Materialize all", *GROUPS])
    jump = "//input[starts-with(@placeholder, 'Jump to')]"  # the tree's search box
    driver.find_element(By.XPATH, f"{jump}/following::button[1]").click()
    WebDriverWait(driver, 30).until(EC.invisibility_of_element_located((By.XPATH, jump)))
    ActionChains(driver).key_down(Keys.ALT).send_keys("e").key_up(Keys.ALT).perform()
    text = wait_for_text(driver, ASSETS)
    wait_for_statuses(driver)
    wait_until_still(driver, "evaluation_report")
    return text


# The border colour of each named asset's box on the graph (null where none shows).
NODE_BORDERS = """
return arguments[0].map((name) => {
    const it = document.evaluate(`//*[normalize-space(text())='${name}']`, document, null,
        XPathResult.FIRST_ORDERED_NODE_TYPE, null).singleNodeValue;
    const box = it && it.closest("[class*='AssetNodeBox']");
    return box ? getComputedStyle(box).borderColor : null;
});"""


def wait_for_statuses(driver, timeout: float = 30.0) -> None:
    """Until the graph draws `raw_data` (materialized) unlike `scored_batches` (never): the
    boxes come grey, and take their status colours when the assets' live data arrives."""
    deadline, borders = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        borders = driver.execute_script(NODE_BORDERS, ["raw_data", "scored_batches"])
        if None not in borders and borders[0] != borders[1]:
            return
        time.sleep(0.2)
    raise AssertionError(f"no asset statuses on the graph after {timeout:.0f} s: {borders}")


def open_evaluation_report(driver, ui: UI, expected: list[str]) -> str:
    """The asset page of `evaluation_report` (Catalog), its Description folded so that the
    status and the metadata table share the screen; its rendered text."""
    from selenium.webdriver.common.by import By

    driver.get(f"{ui.url}/assets/evaluation_report")
    text = wait_for_text(driver, ["Latest materialization", "Latest check results", *expected])
    driver.find_element(By.XPATH, "//span[normalize-space(text())='Description']").click()
    wait_for_text(driver, ["decision_threshold"])
    wait_until_still(driver, "accuracy")
    return text


@pytest.mark.services
def test_the_asset_graph_and_evaluation_report_as_a_browser_renders_them(trained, tmp_path):
    ui = trained
    nodes = ui.query(CHECK_RESULTS, {"keys": [{"path": ["evaluation_report"]}]})["assetNodes"]
    (f1_gate,) = [
        c["executionForLatestMaterialization"]["evaluation"]
        for c in nodes[0]["assetChecksOrError"]["checks"]
        if c["name"] == "f1_gate"
    ]
    answer = ui.query(MATERIALIZATION, {"key": {"path": ["evaluation_report"]}})
    entries = answer["assetOrError"]["assetMaterializations"][0]["metadataEntries"]
    (f1,) = [e["floatValue"] for e in entries if e["label"] == "f1"]

    with chromium(tmp_path / "chromedriver.log") as driver:
        # Debian's chromedriver drove Debian's Chromium (no downloaded browser or driver)
        assert driver.service.path == str(CHROMEDRIVER)
        version, debian = driver.capabilities["browserVersion"], chromium_version()
        assert f"Chromium {version} " in debian, (version, debian)

        graph = open_asset_graph(driver, ui)
        save_screenshot(driver, tmp_path / "asset-graph.png")
        for name in ["Global asset lineage", "Materialize all", *GROUPS, *ASSETS]:
            assert name in graph, name
        # today's menu: Overview, Runs, Catalog, Jobs, Automation, Lineage, Deployment
        menu = ["Overview", "Runs", "Catalog", "Jobs", "Automation", "Lineage", "Deployment"]
        assert all(f"\n{m}\n" in f"\n{graph}\n" for m in menu), graph[:400]

        # the metrics as metadata, F1 as the UI prints the float, and the gates' summary
        report = open_evaluation_report(driver, ui, ["f1", repr(f1), "all passed"])
        save_screenshot(driver, tmp_path / "evaluation-report.png")
        for key in ("accuracy", "roc_auc", "decision_threshold", "production_version"):
            assert f"\n{key}\n" in report, key

        # the Checks tab with f1_gate open: every gate Succeeded, f1_gate's verdict Passed with
        # the sentence the check wrote (its figures and the limit)
        driver.get(f"{ui.url}/assets/evaluation_report?view=checks&checkDetail=f1_gate")
        # (each check's status arrives on its own: waited for, not read at the first look)
        succeeded = [f"{name}\nSucceeded" for name in EVALUATION_CHECKS]
        checks = wait_for_text(
            driver,
            [
                f"Checks ({len(EVALUATION_CHECKS)})",
                "Latest execution",
                f1_gate["description"],
                *succeeded,
            ],
        )
        save_screenshot(driver, tmp_path / "evaluation-report-checks.png")
        assert "\nEvaluation result\nPassed\n" in checks, checks
        assert f1_gate["description"].startswith(f"f1 = {f1:.4f} passes"), f1_gate
        assert f"{F1_FLOOR}" in f1_gate["description"], f1_gate

        # no community pop-up: the server says not to show it because dagster.yaml says so (not
        # because someone dismissed it: no seen-file, nothing in this fresh profile), and after
        # the page has been up for 3 s (the pop-up comes 1 s after the answer) none shows
        home = Path(ui.world.env["DAGSTER_HOME"])
        assert yaml.safe_load((home / "dagster.yaml").read_text())["nux"] == {"enabled": False}
        assert not (home / ".nux" / "nux.yaml").exists()
        assert driver.execute_script("return localStorage.getItem('communityNux')") is None
        asked = driver.execute_async_script(
            "fetch('/graphql', {method: 'POST', headers: {'Content-Type': 'application/json'},"
            " body: JSON.stringify({query: arguments[0]})}).then((r) => r.json())"
            ".then(arguments[arguments.length - 1])",
            SHOULD_SHOW_NUX,
        )
        assert asked == {"data": {"shouldShowNux": False}}, asked
        deadline = time.monotonic() + 10
        while driver.execute_script("return performance.now()") < 3000:
            assert time.monotonic() < deadline, "the page's clock did not reach 3 s"
            time.sleep(0.1)
        assert COMMUNITY_POPUP not in page_text(driver)

    for name in ("asset-graph", "evaluation-report", "evaluation-report-checks"):
        png = tmp_path / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000, png


def chromium_version() -> str:
    """What /usr/bin/chromium says it is, e.g. `Chromium 156.0.8078.114 built on Debian ...`."""
    import subprocess

    return subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout


def main(argv: list[str]) -> None:
    """`make screenshots`: the README's two pictures, from a real run in a temporary home."""
    out = Path(argv[0]) if argv else ROOT / "docs"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mlassets-screenshots-") as tmp:
        root = Path(tmp)
        with ui_with_a_training_run(root) as ui, chromium(root / "chromedriver.log") as driver:
            if ui.status != "SUCCESS":
                raise SystemExit(f"training_job ended {ui.status}:\n{ui.tail()}")
            open_asset_graph(driver, ui)
            save_screenshot(driver, out / "asset-graph.png")
            open_evaluation_report(driver, ui, ["f1", "all passed"])
            save_screenshot(driver, out / "evaluation-report.png")
    for name in ("asset-graph.png", "evaluation-report.png"):
        print(f"{out / name}: {(out / name).stat().st_size // 1024} KB")


if __name__ == "__main__":
    main(sys.argv[1:])
