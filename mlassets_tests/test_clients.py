"""The clients a user runs: `dg` (dagster-dg-cli) and `make serve`, on this project's layout.

`[tool.dg]` in pyproject.toml points dg at the module `mlassets.definitions`, which serves the
bundled folder of specs (two models); `make demo` launches `<model>_training_job` for each
(`python -m mlassets.launch`, with the code location's origin: test_demo_launch.py; `dg launch`
runs the same job, tested here) and `make dev` is `dg dev`. `make serve` (`python -m mlassets.serve`) runs MLflow's scoring
server for the version that run put in production, which must answer the spec's raw rows exactly
as the Pipeline does. Each command runs as a user runs it, on a home of its own (Dagster
instance, MLflow store, data) under tmp; only the fraud model is trained (the demo trains both).
"""

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlassets_tests.conftest import FAST_TRAINING, NAME, TEST_ROWS, CliWorld
from mlassets_tests.services import HOST, free_port, log_tail, running, wait_http
from mlassets_tests.test_cli import ROOT, cli_env
from mlassets_tests.test_many_models import CHURN

pytestmark = pytest.mark.e2e

DG = str(Path(sys.executable).parent / "dg")


def dg_env(root: Path) -> dict:
    """A CLI home (see test_cli.cli_env) with this venv active, as `make` runs dg, serving the
    bundled folder of specs (the default: no MLASSETS_SPEC)."""
    env = {**cli_env(root, None), "VIRTUAL_ENV": sys.prefix}
    del env["MLASSETS_SPEC"]
    return env


JOB = f"{NAME}_training_job"
KEY = f"{NAME}/raw_data"


def dg(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [DG, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def launched(tmp_path_factory) -> tuple[CliWorld, subprocess.CompletedProcess]:
    """The fraud model's training job, on small data and the fast search, through the CLI
    Dagster tells users to run: `dg launch --job fraud_detection_training_job` (`make demo`
    launches the same job with its code location's origin: test_demo_launch.py)."""
    from mlassets.synthetic import fraud_frame, write_frame

    root = tmp_path_factory.mktemp("dg")
    world = CliWorld(root, dg_env(root))
    write_frame(fraud_frame(TEST_ROWS, seed=7), world.source)
    config = world.config("fast", {f"{NAME}__candidate_model": {"config": FAST_TRAINING}})
    return world, dg("launch", "--job", JOB, "-c", config, env=world.env)


def dagster_runs(world: CliWorld) -> list:
    """The runs of the world's instance, newest first."""
    from dagster import DagsterInstance, RunsFilter

    with DagsterInstance.from_config(world.env["DAGSTER_HOME"]) as instance:
        return [r.dagster_run for r in instance.get_run_records(RunsFilter())]


def test_dg_check_defs_and_list_defs_load_our_code_location(tmp_path):
    env = dg_env(tmp_path)
    checked = dg("check", "defs", env=env)
    assert checked.returncode == 0, checked.stdout + checked.stderr[-3000:]
    assert "All definitions loaded successfully" in checked.stdout + checked.stderr

    listed = dg("list", "defs", "--json", env=env)
    assert listed.returncode == 0, listed.stderr[-3000:]
    defs = json.loads(listed.stdout)
    assert sorted(j["name"] for j in defs["jobs"]) == sorted(
        f"{model}_{job}"
        for model in (NAME, CHURN)
        for job in ("monitoring_job", "rollback_job", "training_job")
    )
    assets = {a["asset_key"] for a in defs["assets"]}
    for model in (NAME, CHURN):
        assert {f"{model}/{a}" for a in ("raw_data", "candidate_model", "drift_report")} <= assets
    assert sorted(s["name"] for s in defs["sensors"]) == [
        f"{CHURN}_drift_sensor",
        f"{NAME}_drift_sensor",
    ]
    checks = [c["key"] for c in defs["asset_checks"]]
    assert len(checks) % 2 == 0 and len(checks) >= 40
    assert sum(c.startswith(f"{NAME}/") for c in checks) == len(checks) // 2


def test_dg_launch_runs_training_job_and_mlflow_names_its_run_after_it(launched):
    world, proc = launched
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f'Finished execution of run for "{JOB}"' in proc.stderr
    assert "SupersessionWarning" not in proc.stderr  # dg is what Dagster tells users to run

    (run,) = dagster_runs(world)
    assert (run.job_name, run.status.value) == (JOB, "SUCCESS")
    # one MLflow run for the Dagster run, named after its job: what MLflow's UI lists it as
    (mlflow_run,) = world.client().search_runs(
        [world.client().get_experiment_by_name(NAME).experiment_id],
        filter_string=f"tags.dagster_run_id = '{run.run_id}'",
    )
    assert mlflow_run.info.run_name == JOB
    assert mlflow_run.data.tags["mlflow.runName"] == JOB
    assert mlflow_run.info.status == "FINISHED"
    assert world.registry_state() == (["1"], "1")

    # `make demo`'s summary reads this run as before
    summary = subprocess.run(
        [sys.executable, "-m", "mlassets.summary"],
        cwd=world.root,
        env=world.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert summary.returncode == 0, summary.stderr[-2000:]
    # the README's order: fraud, then churn
    fraud, churn = summary.stdout.split(f"== {CHURN}\n")
    assert fraud.startswith(f"== {NAME}\n")
    assert f"run {run.run_id[:8]}: SUCCESS" in fraud
    assert "checks passed: 21/21" in fraud
    assert f"production model: {NAME} version 1" in fraud
    # the other bundled model, not trained here, says so
    assert churn.startswith(f"no training run of {CHURN} yet")
    assert f"production model: none registered for {CHURN}" in churn


def test_dg_launch_materializes_a_selection(launched):
    from dagster import AssetKey

    world, first = launched
    assert first.returncode == 0, first.stderr[-3000:]
    proc = dg("launch", "--assets", KEY, env=world.env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    newest = dagster_runs(world)[0]
    assert newest.status.value == "SUCCESS"
    assert newest.asset_selection == {AssetKey([NAME, "raw_data"])}
    assert world.registry_state() == (["1"], "1")  # a data run touches no model


def graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://{HOST}:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["data"]


RUNS = "{ runsOrError { __typename ... on Runs { results { runId jobName status } } } }"
DAEMON = '{ instance { daemonHealth { daemonStatus(daemonType: "SENSOR") { healthy } } } }'


def test_dg_dev_serves_the_ui_and_runs_the_daemon_on_127_0_0_1(launched, tmp_path):
    """`make dev`: the webserver on 127.0.0.1 and the daemon, on the demo's home."""
    world, first = launched
    assert first.returncode == 0, first.stderr[-3000:]
    port, log = free_port(), tmp_path / "dg_dev.log"
    cmd = [DG, "dev", "-h", HOST, "-p", str(port)]
    with running(cmd, log, env=world.env, cwd=ROOT) as server:  # its session killed however it ends
        deadline, runs, daemon = time.monotonic() + 180, None, None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                runs = graphql(port, RUNS)["runsOrError"]
                daemon = graphql(port, DAEMON)["instance"]["daemonHealth"]["daemonStatus"]
                if daemon["healthy"]:
                    break
            except (OSError, KeyError, TypeError):
                pass  # not serving yet, or the daemon has not sent its first heartbeat
            time.sleep(1)
        assert server.poll() is None, f"dg dev exited with {server.returncode}\n{log_tail(log)}"
        assert daemon and daemon["healthy"], f"no healthy sensor daemon:\n{log_tail(log)}"
    assert runs["__typename"] == "Runs", runs
    # the demo's run shows in the UI as the model's training job
    assert (JOB, "SUCCESS") in [(r["jobName"], r["status"]) for r in runs["results"]]
    text = log.read_text()
    assert f"Serving dagster-webserver on http://{HOST}:{port}" in text
    # the warnings a `make dev` user saw before: gone
    assert "in the current folder" not in text  # no dagster.yaml at the root (see deploy/local)
    assert "SupersessionWarning" not in text


def post(url: str, body: str | bytes, content_type: str) -> tuple[int, str]:
    data = body.encode() if isinstance(body, str) else body
    request = urllib.request.Request(url, data=data, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def split_json(rows: pd.DataFrame, params: dict | None = None) -> str:
    """A `dataframe_split` request of `rows` as a consumer writes it (ISO dates, null for NaN)."""
    payload = {"dataframe_split": json.loads(rows.to_json(orient="split", date_format="iso"))}
    payload["dataframe_split"].pop("index")
    if params:
        payload["params"] = params
    return json.dumps(payload)


def test_make_serve_answers_raw_rows_like_the_pipeline(launched, tmp_path):
    from mlassets.ml.evaluation import positive_scores
    from mlassets.ml.features import input_frame
    from mlassets.ml.registry import PRODUCTION, alias_version, load_verified_model
    from mlassets.spec import load_spec
    from mlassets.synthetic import fraud_batch

    world, first = launched
    assert first.returncode == 0, first.stderr[-3000:]
    spec = load_spec()
    client = world.client()
    version = alias_version(client, spec.name, PRODUCTION)
    model = load_verified_model(client, spec.name, version)

    # a landed batch as it is: raw columns, id and label included, a few values missing
    rows = fraud_batch(40, seed=23, drift="covariate").reset_index(drop=True)
    rows.loc[3, "feature_2"] = np.nan
    rows.loc[5, "category"] = None
    expected = model.predict(input_frame(rows, spec)).tolist()
    probability = positive_scores(model, input_frame(rows, spec))
    assert 0 < sum(expected) < len(expected)  # both classes: a constant answer cannot pass

    port = free_port()
    # the demo's home, from a shell without the venv: `uvicorn` must come from the venv all the
    # same; and MLflow's deserialization switch stays off (mlassets' loader needs none)
    env = {**world.env, "PATH": "/usr/bin:/bin", "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false"}
    env.pop("VIRTUAL_ENV", None)
    log = tmp_path / "serve.log"
    # two models are served here: which one is the user's to say
    unnamed = subprocess.run(
        [sys.executable, "-m", "mlassets.serve", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert unnamed.returncode == 2
    assert f"--model: one of {CHURN}, {NAME}" in unnamed.stderr
    command = [sys.executable, "-m", "mlassets.serve", "--port", str(port), "--model", NAME]
    with running(command, log, env=env, cwd=tmp_path) as server:
        wait_http(server, f"http://127.0.0.1:{port}/ping", log, timeout=180)
        url = f"http://127.0.0.1:{port}/invocations"
        json_type, csv_type = "application/json", "text/csv"
        parquet_type = "application/vnd.apache.parquet"

        status, body = post(url, split_json(rows), json_type)
        assert status == 200, body
        assert json.loads(body)["predictions"] == expected

        # a landed Parquet batch as it is: pandas' own types (datetime64, int64, None)
        status, body = post(url, rows.to_parquet(index=False), parquet_type)
        assert status == 200, body
        assert json.loads(body)["predictions"] == expected

        # a landed CSV batch as it is: pandas reads it (no input schema to parse it with)
        status, body = post(url, rows.to_csv(index=False), csv_type)
        assert status == 200, body
        assert json.loads(body)["predictions"] == expected

        status, body = post(url, split_json(rows, {"output": "probability"}), json_type)
        assert status == 200, body
        np.testing.assert_allclose(json.loads(body)["predictions"], probability, rtol=1e-9)

        status, body = post(url, split_json(rows.head(3), {"output": "both"}), json_type)
        assert status == 200, body
        both = json.loads(body)["predictions"]
        assert [r["prediction"] for r in both] == expected[:3]

        # an empty batch: an empty answer, whatever the output
        for output in ("label", "probability", "both", "calibrated_probability", "checked"):
            status, body = post(url, split_json(rows.head(0), {"output": output}), json_type)
            assert status == 200 and json.loads(body) == {"predictions": []}, (output, body)

        # rows the spec forbids: refused below, scored and flagged on request
        out_of_range = rows.head(3).copy()
        out_of_range.loc[1, "feature_1"] = -1e9  # the spec: min 0, max 100
        unknown = rows.head(3).copy()
        unknown.loc[2, "category"] = "toys"  # the spec: electronics, grocery, travel, fashion
        status, body = post(url, split_json(unknown, {"output": "checked"}), json_type)
        assert status == 200, body
        checked = json.loads(body)["predictions"]
        assert [r["prediction"] for r in checked[:2]] == expected[:2]
        assert [r["problems"] for r in checked] == [
            [],
            [],
            ["column 'category': 'toys' is not among the spec's values"],
        ]

        # bad requests: each a 4xx that says what is wrong, and the server goes on
        bad_type = rows.head(2).astype({"feature_1": str})
        bad_type.loc[1, "feature_1"] = "lots"
        bad_date = rows.head(2).copy()
        bad_date["timestamp"] = bad_date["timestamp"].astype(str)
        bad_date.loc[0, "timestamp"] = "yesterday"
        cases = {
            "malformed JSON": ('{"dataframe_split": {"columns": ["feature_1"', json_type, "JSON"),
            "no rows key": (json.dumps({"rows": []}), json_type, "dataframe_split"),
            "a wrong type": (split_json(bad_type), json_type, "column 'feature_1'"),
            "a wrong type in CSV": (
                bad_type.to_csv(index=False),
                csv_type,
                "column 'feature_1' holds values that are not numbers: ['lots']",
            ),
            "a wrong type in Parquet": (
                bad_type.to_parquet(index=False),
                parquet_type,
                "column 'feature_1' holds values that are not numbers: ['lots']",
            ),
            "a date that is none": (split_json(bad_date), json_type, "timestamp"),
            "a value out of range": (
                split_json(out_of_range),
                json_type,
                "column 'feature_1' holds values below the spec's min 0: [-1000000000.0] (1 row)",
            ),
            "a value out of range in CSV": (
                out_of_range.to_csv(index=False),
                csv_type,
                "column 'feature_1' holds values below the spec's min 0: [-1000000000.0]",
            ),
            "an unknown category": (
                split_json(unknown, {"output": "both"}),
                json_type,
                "column 'category' holds values not among the spec's values "
                "['electronics', 'grocery', 'travel', 'fashion']: ['toys'] (1 row)",
            ),
            "a missing column": (
                split_json(rows.drop(columns="signup_date")),
                json_type,
                "signup_date",
            ),
            "an unknown output": (
                split_json(rows.head(1), {"output": "odds"}),
                json_type,
                "output",
            ),
        }
        for case, (request, content_type, named) in cases.items():
            status, body = post(url, request, content_type)
            assert 400 <= status < 500, (case, status, body[:500])
            message = json.loads(body)["message"]
            assert named in message, (case, message[:1000])
            status, body = post(url, split_json(rows.head(4)), json_type)
            assert status == 200 and json.loads(body)["predictions"] == expected[:4], (case, body)
    assert server.returncode is not None, log_tail(log)
