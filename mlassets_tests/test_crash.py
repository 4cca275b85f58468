"""Crash safety through the real CLI: a run SIGKILLed during training, and one killed right after
its model version was created, leave nothing that a later run trips over or could promote.

After each kill the debris is really there (a RUNNING MLflow run, a STARTED Dagster run, joblib
workers of the dead process, a `pending` version); the next run's start sweeps it: the MLflow run
FAILED, the Dagster run failed, the workers gone, the version `abandoned` and alias-free, and that
next run trains, registers and promotes as usual.
"""

import os
import signal
import subprocess

import pytest

from mlassets_tests.conftest import NAME, SERIAL_TRAINING, CliWorld, cli_world_with_version_1
from mlassets_tests.test_cli import DAGSTER
from mlassets_tests.test_daemon import wait_for

pytestmark = pytest.mark.e2e

# A search long enough to be caught in the act: 4 candidates x 5 folds of 200-400 trees.
SLOW_TRAINING = {
    "strategy": "grid",
    "param_grid": {"n_estimators": [200, 400], "max_depth": [None, 16]},
    "cv_folds": 5,
    "n_jobs": 2,
}


def children_of(pid: int) -> list[int]:
    """Live processes started (directly or not) by the run process `pid`, found by the owner
    variable the run exports; they outlive it when it is killed."""
    from mlassets.ml.recovery import orphan_processes

    return orphan_processes(owner_alive=lambda p: False, owners=[pid])


@pytest.fixture
def world(tmp_path) -> CliWorld:
    return cli_world_with_version_1(tmp_path)


def cmdline(pid: int) -> str:
    try:
        return open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def start(world: CliWorld, config: str, env: dict | None = None, log=None) -> subprocess.Popen:
    """`training_job` through the CLI, in the background (its log to `log`)."""
    with open(log or os.devnull, "w") as out:
        return subprocess.Popen(
            [DAGSTER, "job", "execute", "-m", "mlassets.definitions", "-j", "training_job"]
            + ["-c", config],
            cwd=world.root,
            env=env or world.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def test_killed_runs_leave_nothing_the_next_run_trips_over(world):
    from dagster import DagsterRunStatus, RunsFilter

    from mlassets.ml.recovery import process_alive
    from mlassets.ml.registry import PRODUCTION, alias_version, load_verified_model

    client = world.client()
    slow = world.config("slow", {"candidate_model": {"config": SLOW_TRAINING}})

    # 1. SIGKILL in the middle of the search (its joblib workers are running)
    log = world.root / "killed.log"
    run = start(world, slow, log=log)

    def searching() -> list[int]:
        started = 'Started execution of step "candidate_model"' in log.read_text()
        return started and [p for p in children_of(run.pid) if "LokyProcess" in cmdline(p)]

    workers = wait_for(searching, "the search's joblib workers", every=0.2)
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    assert any(process_alive(p) for p in workers), "workers should outlive the killed run"
    killed_mlflow = client.search_runs(
        [client.get_experiment_by_name(NAME).experiment_id],
        filter_string="attributes.status = 'RUNNING'",
    )
    assert len(killed_mlflow) == 1, "the killed run's MLflow run is left RUNNING"
    killed_dagster = killed_mlflow[0].data.tags["dagster_run_id"]

    # 2. SIGKILL right after the model version was created, before it was marked registered
    # (a search without a pool: its placement is not what is killed here)
    fast = world.config("fast", {"candidate_model": {"config": SERIAL_TRAINING}})
    crashed = start(world, fast, {**world.env, "MLASSETS_FAILPOINT": "version_created"})
    assert crashed.wait(timeout=600) == -signal.SIGKILL
    versions = client.search_model_versions(f"name='{NAME}'")
    orphan = max(versions, key=lambda v: int(v.version))
    assert str(orphan.version) == "2" and orphan.tags["mlassets.status"] == "pending"
    assert alias_version(client, NAME, PRODUCTION) == "1"

    # 3. the next run sweeps both, then trains, registers and promotes
    proc = world.materialize("*", fast)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "swept what killed runs left behind" in proc.stderr

    assert client.get_run(killed_mlflow[0].info.run_id).info.status == "FAILED"
    running = client.search_runs(
        [client.get_experiment_by_name(NAME).experiment_id],
        filter_string="attributes.status = 'RUNNING'",
    )
    assert running == []
    wait_for(lambda: not any(map(process_alive, workers)), "the orphans to be gone", 30, 0.2)
    assert children_of(run.pid) == []
    with _instance(world) as instance:
        dead = instance.get_run_by_id(killed_dagster)
        assert dead.status == DagsterRunStatus.FAILURE
        assert not instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.STARTED]))

    abandoned = client.get_model_version(NAME, "2")
    assert abandoned.tags["mlassets.status"] == "abandoned"
    assert not abandoned.aliases
    assert alias_version(client, NAME, PRODUCTION) == "3"
    model = load_verified_model(client, NAME, "3")
    assert hasattr(model, "predict")


def _instance(world: CliWorld):
    from dagster import DagsterInstance

    return DagsterInstance.from_config(world.env["DAGSTER_HOME"])
