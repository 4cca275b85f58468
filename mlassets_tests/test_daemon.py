"""End to end with the real daemon: a drifted batch lands, drift_sensor retrains and promotes."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from mlassets.synthetic import BATCH_FIRST_ID, fraud_batch, fraud_frame, write_frame
from mlassets_tests.conftest import (
    SERIAL_TRAINING,
    empty_mlflow_store,
    materialize_all_in_process,
)
from mlassets_tests.test_cli import DAGSTER, ROOT, cli_env

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
WAIT_S = 300


def wait_for(predicate, what: str, timeout: float = WAIT_S, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def home_of(env: dict) -> Path:
    return Path(env["MLASSETS_HOME"])


def sensor_ticks(instance, after: float | None = None):
    """drift_sensor's ticks, newest first: all of them, or those that started after `after`."""
    states = [s for s in instance.all_instigator_state() if s.instigator_name == "drift_sensor"]
    if not states:
        return []
    return instance.get_ticks(states[0].instigator_origin_id, states[0].selector_id, after=after)


@pytest.fixture
def daemon_world(tmp_path, request):
    """A home with version 1 in production and a daemon running its sensor; the retraining
    runs take the fast search and, given as the fixture's parameter, more ops' config."""
    from dagster import DagsterInstance

    env = cli_env(tmp_path, None)
    assert empty_mlflow_store(tmp_path / "mlflow.db") == env["MLFLOW_TRACKING_URI"]
    home = Path(env["MLASSETS_HOME"])
    write_frame(fraud_frame(6000, seed=7), home / "data" / "transactions.parquet")
    # the search without a process pool: the daemon is under test here, not where fits run
    ops = {"candidate_model": {"config": SERIAL_TRAINING}}
    fast = tmp_path / "fast.yaml"
    fast.write_text(yaml.safe_dump({"ops": {**ops, **getattr(request, "param", {})}}))
    env.update(
        MLASSETS_SENSOR_INTERVAL="3",
        MLASSETS_DRIFT=json.dumps({"min_rows": 5000}),
        MLASSETS_RETRAIN_CONFIG=str(fast),
    )
    # the instance's storage exists before two processes use it
    instance = DagsterInstance.from_config(env["DAGSTER_HOME"])
    log = open(tmp_path / "daemon.log", "w")  # noqa: SIM115 (closed in finally)
    daemon = subprocess.Popen(
        [str(BIN / "dagster-daemon"), "run", "-w", str(ROOT / "workspace.yaml")],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        # version 1 while the daemon starts (its sensor finds no batches yet):
        # `dagster asset materialize --select '*'` on this home, run in this process
        assert materialize_all_in_process(env, ops).success, "version 1's run failed"
        yield env, home / "data" / "landing", instance, daemon
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait()
        log.close()
        instance.dispose()


def test_daemon_retrains_on_drift_and_not_on_clean_data(daemon_world, tmp_path):
    from dagster import DagsterRunStatus, RunsFilter
    from mlflow import MlflowClient

    env, landing, instance, daemon = daemon_world
    client = MlflowClient(env["MLFLOW_TRACKING_URI"], env["MLFLOW_TRACKING_URI"])
    assert str(client.get_model_version_by_alias("fraud_detection", "production").version) == "1"

    write_frame(
        fraud_batch(6000, 31, "none", first_id=BATCH_FIRST_ID), landing / "batch_0001.parquet"
    )

    def judged_clean():
        return [
            t for t in sensor_ticks(instance) if t.skip_reason and "no retrain" in t.skip_reason
        ]

    ticks = wait_for(judged_clean, "a tick that judged the clean batch")
    assert "6,000 recent rows" in ticks[0].skip_reason
    assert daemon.poll() is None, (tmp_path / "daemon.log").read_text()[-3000:]
    sensor_runs = RunsFilter(tags={"mlassets/trigger": "drift_sensor"})
    assert instance.get_runs(sensor_runs) == []

    write_frame(
        fraud_batch(6000, 32, "covariate", first_id=BATCH_FIRST_ID + 100_000),
        landing / "batch_0002.parquet",
    )
    runs = wait_for(
        lambda: instance.get_runs(sensor_runs), "drift_sensor to launch a run", every=0.5
    )
    # a manual run beside the sensor's, on the same home: it trains on the source alone and
    # registers (no alias), while the sensor's run trains on source + batches and promotes
    manual = subprocess.Popen(
        [DAGSTER, "asset", "materialize", "-m", "mlassets.definitions"]
        + ["--select", "*registered_model", "-c", env["MLASSETS_RETRAIN_CONFIG"]],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    manual_log = manual.communicate(timeout=WAIT_S)[0]
    assert manual.returncode == 0, manual_log[-3000:]
    run = wait_for(
        lambda: (r := instance.get_run_by_id(runs[0].run_id)).is_finished and r,
        "the retraining run to finish",
    )
    assert run.status == DagsterRunStatus.SUCCESS, (tmp_path / "daemon.log").read_text()[-3000:]
    assert run.job_name == "training_job"

    production = client.get_model_version_by_alias("fraud_detection", "production")
    assert production.tags["dagster_run_id"] == run.run_id
    assert production.tags["trigger"] == "drift_sensor"
    assert "feature drift" in production.tags["retrain_reason"]
    assert str(client.get_model_version_by_alias("fraud_detection", "previous").version) == "1"

    # each version was evaluated on its own run's test rows, disjoint from its training rows
    from mlassets.ml.data import fingerprint

    store = home_of(env) / "storage" / "fraud_detection"
    new = [
        v for v in client.search_model_versions("name='fraud_detection'") if str(v.version) != "1"
    ]
    assert len(new) == 2 and {v.tags["trigger"] for v in new} == {"drift_sensor", "manual"}
    for mv in new:
        run_id = mv.tags["dagster_run_id"]
        train = pd.read_parquet(store / "train_set" / run_id / "value.parquet")
        test = pd.read_parquet(store / "test_set" / run_id / "value.parquet")
        assert mv.tags["test_fingerprint"] == fingerprint(test)
        assert mv.tags["train_fingerprint"] == fingerprint(train)
        assert not set(train["user_id"]) & set(test["user_id"])
    by_trigger = {v.tags["trigger"]: v for v in new}
    assert int(by_trigger["drift_sensor"].tags["train_rows"]) > int(
        by_trigger["manual"].tags["train_rows"]
    )

    # the same batches never launch a second run: a tick after the run ended judged them as
    # already seen (the sensor's own cursor, not Dagster's run_key dedup), and no tick after the
    # launching one requested a run
    (launch,) = wait_for(
        lambda: [t for t in sensor_ticks(instance) if run.run_id in t.run_ids],
        "the tick that launched the retraining run",
    )
    ended = instance.get_run_record_by_id(run.run_id).end_time
    seen = wait_for(
        lambda: [
            t
            for t in sensor_ticks(instance, after=ended)
            if (t.skip_reason or "").startswith("no new batches in")
        ],
        "a tick after the run that finds no new batches",
    )
    assert "(2 seen before)" in seen[0].skip_reason, seen[0].skip_reason
    later = sensor_ticks(instance, after=launch.timestamp)
    assert later and not [t.run_ids for t in later if t.run_ids or t.run_requests]
    assert [r.run_id for r in instance.get_runs(sensor_runs)] == [run.run_id]

    # a batch like the source after the drift retrain: the new production was trained on the
    # source and on the landed batches, and these rows resemble the first part: no drift (the
    # mixture of both parts would call them drifted), and no run
    before_clean = time.time()
    write_frame(
        fraud_batch(6000, 33, "none", first_id=BATCH_FIRST_ID + 200_000),
        landing / "batch_0003.parquet",
    )
    (clean,) = wait_for(
        lambda: [
            t
            for t in sensor_ticks(instance, after=before_clean)
            if "resemble most" in (t.skip_reason or "")
        ][:1],
        "a tick that judged the clean batch after the retrain",
    )
    assert clean.skip_reason.startswith("no retrain: no feature drifted"), clean.skip_reason
    assert "the recent rows resemble most: source" in clean.skip_reason
    assert [r.run_id for r in instance.get_runs(sensor_runs)] == [run.run_id]


# a challenger must improve F1 by 0.5 to replace production: none does
NEVER_BETTER = {"evaluation_report": {"config": {"tolerance": -0.5}}}


@pytest.mark.parametrize("daemon_world", [NEVER_BETTER], indirect=True)
def test_daemon_keeps_production_when_the_challenger_is_not_better(daemon_world, tmp_path):
    """A retrain whose challenger does not beat production ends calmly: a successful run that
    says production was kept and why, and the batch it judged is not judged again."""
    from dagster import DagsterRunStatus, RunsFilter
    from mlflow import MlflowClient

    env, landing, instance, daemon = daemon_world
    client = MlflowClient(env["MLFLOW_TRACKING_URI"], env["MLFLOW_TRACKING_URI"])
    write_frame(
        fraud_batch(6000, 34, "covariate", first_id=BATCH_FIRST_ID), landing / "batch_0001.parquet"
    )
    sensor_runs = RunsFilter(tags={"mlassets/trigger": "drift_sensor"})
    (launched,) = wait_for(lambda: instance.get_runs(sensor_runs), "drift_sensor to launch a run")
    run = wait_for(
        lambda: (r := instance.get_run_by_id(launched.run_id)).is_finished and r,
        "the retraining run to finish",
    )
    assert run.status == DagsterRunStatus.SUCCESS, (tmp_path / "daemon.log").read_text()[-3000:]
    assert run.tags["mlassets/outcome"].startswith("kept version 1: the challenger did not beat")
    assert str(client.get_model_version_by_alias("fraud_detection", "production").version) == "1"
    assert {str(v.version) for v in client.search_model_versions("name='fraud_detection'")} == {"1"}

    # the next batch is judged alone: the kept run's batch is accounted for
    before = time.time()
    write_frame(
        fraud_batch(6000, 35, "none", first_id=BATCH_FIRST_ID + 100_000),
        landing / "batch_0002.parquet",
    )
    (judged,) = wait_for(
        lambda: [
            t
            for t in sensor_ticks(instance, after=before)
            if "recent rows" in (t.skip_reason or "")
        ][:1],
        "a tick that judged the next batch",
    )
    assert judged.skip_reason.startswith("no retrain"), judged.skip_reason
    assert "6,000 recent rows" in judged.skip_reason
    assert [r.run_id for r in instance.get_runs(sensor_runs)] == [run.run_id]
