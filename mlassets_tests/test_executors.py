"""`training_job` under each executor `MLASSETS_EXECUTOR` names, run as a user runs it (the
`dagster` CLI, the profiles' own files and start scripts): every step in its own process or
worker, values crossing through the value store, one MLflow run, and nothing left running."""

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import yaml

from mlassets_tests.conftest import FAST_TRAINING, NAME, TEST_ROWS, empty_mlflow_store
from mlassets_tests.services import (
    HOST,
    free_port,
    log_tail,
    require_rabbitmq,
    running,
)
from mlassets_tests.test_cli import DAGSTER, ROOT, cli_env
from mlassets_tests.test_graph import ALL_ASSETS

pytestmark = pytest.mark.e2e

# every asset training_job materializes, each a value in the store
VALUE_ASSETS = tuple(sorted(ALL_ASSETS))


def profile_env(profile: str) -> dict[str, str]:
    """deploy/<profile>/profile.env as `set -a; . profile.env` gives it to a shell."""
    path = ROOT / "deploy" / profile / "profile.env"
    keys = [
        line.split("=", 1)[0]
        for line in path.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    out = subprocess.run(
        ["bash", "-c", 'set -a; . "$1"; env -0', "_", str(path)],
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        check=True,
    ).stdout.decode()
    sourced = dict(e.split("=", 1) for e in out.split("\0") if "=" in e)
    return {k: sourced[k] for k in keys}


def world(tmp_path: Path, profile: str | None = None, **extra: str) -> dict[str, str]:
    """A CLI home with the test data; the profile's settings, then this test's own."""
    from mlassets.synthetic import fraud_frame, write_frame

    base = cli_env(tmp_path, None)
    assert empty_mlflow_store(tmp_path / "mlflow.db") == base["MLFLOW_TRACKING_URI"]
    env = {**base, **(profile_env(profile) if profile else {}), **extra}
    for key in ("DAGSTER_HOME", "MLASSETS_HOME", "MLFLOW_TRACKING_URI"):  # the test's own
        env[key] = base[key]
    write_frame(
        fraud_frame(TEST_ROWS, seed=7),
        Path(env["MLASSETS_HOME"]) / "data" / "transactions.parquet",
    )
    return env


class Watch:
    """Every loky worker a step starts, seen while the run goes on: {pid: (owner, last seen)}.

    A step exports MLASSETS_OWNER (its identity) before its work, so its workers carry it in their
    start environment. "Last seen" is a time taken before the look that found the process alive, so
    a worker last seen after its step's STEP_SUCCESS certainly outlived the step.
    """

    def __init__(self, poll: float = 0.2):
        self.poll, self.seen, self._stop = poll, {}, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        from mlassets.ml.owner import OWNER_ENV, Identity

        while not self._stop.is_set():
            now = time.time()
            for p in psutil.process_iter(["cmdline", "environ", "status"]):
                info = p.info
                owner = (info.get("environ") or {}).get(OWNER_ENV)
                cmdline = " ".join(info.get("cmdline") or [])
                if owner and "popen_loky_posix" in cmdline and info["status"] != "zombie":
                    self.seen[p.pid] = (Identity.parse(owner).pid, now)
            self._stop.wait(self.poll)

    def __enter__(self) -> "Watch":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def execute_training(
    tmp_path: Path, env: dict[str, str], training: dict | None = None
) -> tuple[subprocess.CompletedProcess, Watch]:
    """`dagster job execute ... training_job` with `training` as candidate_model's config."""
    config = tmp_path / "run_config.yaml"
    training = training or FAST_TRAINING
    config.write_text(yaml.safe_dump({"ops": {"candidate_model": {"config": training}}}))
    cmd = [DAGSTER, "job", "execute", "-m", "mlassets.definitions", "-j", "training_job"]
    with Watch() as watch:
        proc = subprocess.run(
            [*cmd, "-c", str(config)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=480,
        )
    return proc, watch


def the_run(env: dict[str, str]):
    """(run, {step key: pid of the process that executed it}, {step key: when it succeeded},
    candidate_model's metadata)."""
    from dagster import DagsterEventType, DagsterInstance

    with DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        runs = instance.get_runs()
        assert len(runs) == 1
        run = runs[0]
        logs = instance.all_logs(run.run_id)

    def of(kind):
        return [e for e in logs if e.dagster_event and e.dagster_event.event_type == kind]

    pids = {e.step_key: e.dagster_event.pid for e in of(DagsterEventType.STEP_START)}
    ended = {e.step_key: e.timestamp for e in of(DagsterEventType.STEP_SUCCESS)}
    metadata = next(
        e.dagster_event.event_specific_data.materialization.metadata
        for e in logs
        if e.dagster_event is not None
        and e.dagster_event.event_type == DagsterEventType.ASSET_MATERIALIZATION
        and e.dagster_event.asset_key.path[-1] == "candidate_model"
    )
    return run, pids, ended, {k: v.value for k, v in metadata.items()}


def leftovers(owners: set[int]) -> list[int]:
    """Live processes started by (inheriting MLASSETS_OWNER of) one of `owners`, alive or not."""
    from mlassets.ml.recovery import orphan_processes

    return orphan_processes(owner_alive=lambda pid: False, owners=owners)


def assert_nothing_left(owners: set[int], timeout: float = 30.0) -> None:
    """No process a step started is alive (loky's resource trackers exit just after their
    owner; its workers would idle 300 s unless shut down): polled up to `timeout`."""
    deadline = time.monotonic() + timeout
    while (left := leftovers(owners)) and time.monotonic() < deadline:
        time.sleep(0.25)
    assert left == [], f"processes of the run's steps outlived them: {left}"


def assert_one_training_run(env: dict[str, str], ran: tuple[subprocess.CompletedProcess, Watch]):
    """Success, every value in the value store under the run's id, one finished MLflow run, no
    loky worker alive after its step succeeded; returns (step pids, candidate_model's metadata)."""
    from mlflow import MlflowClient

    from mlassets.ml.recovery import DAGSTER_RUN_TAG

    proc, watch = ran
    assert proc.returncode == 0 and "RUN_SUCCESS" in proc.stdout + proc.stderr, (
        proc.stdout[-3000:] + proc.stderr[-3000:]
    )
    run, pids, ended, metadata = the_run(env)
    step_of = {pid: key for key, pid in pids.items()}
    outlived = {
        pid: (step_of[owner], round(last - ended[step_of[owner]], 2))
        for pid, (owner, last) in watch.seen.items()
        if owner in step_of and last > ended.get(step_of[owner], float("inf"))
    }
    assert outlived == {}, f"loky workers alive after their step succeeded (s after): {outlived}"
    store = Path(env["MLASSETS_HOME"]) / "storage" / NAME
    missing = [a for a in VALUE_ASSETS if not (store / a / run.run_id).exists()]
    assert missing == [], f"no value under {store}/<asset>/{run.run_id} for {missing}"
    client = MlflowClient(env["MLFLOW_TRACKING_URI"], env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name(NAME)
    runs = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.{DAGSTER_RUN_TAG} = '{run.run_id}'"
    )
    assert [r.info.status for r in runs] == ["FINISHED"], "not one finished MLflow run"
    running_runs = client.search_runs(
        [experiment.experiment_id], filter_string="attributes.status = 'RUNNING'"
    )
    assert running_runs == []
    assert str(client.get_registered_model(NAME).aliases.get("production")) == "1"
    assert runs[0].data.tags["mlassets.search_placement"] == metadata["search_placement"]
    return pids, metadata


# -- multiprocess ----------------------------------------------------------------------------------


def test_multiprocess_executor_runs_each_step_in_its_own_process(tmp_path):
    env = world(tmp_path, MLASSETS_EXECUTOR="multiprocess", MLASSETS_MAX_CONCURRENT="2")
    # as `make` runs it: no MLFLOW_TRACKING_URI, the home's own store. A step process that sets
    # no MLflow URI of its own (staging_model logs nothing) must still find the version through
    # its resources' explicit URIs, never MLflow's default store in its working folder.
    del env["MLFLOW_TRACKING_URI"]
    uri = empty_mlflow_store(Path(env["MLASSETS_HOME"]) / "mlflow.db")
    ran = execute_training(tmp_path, env)
    pids, metadata = assert_one_training_run({**env, "MLFLOW_TRACKING_URI": uri}, ran)
    assert len(set(pids.values())) == len(pids) > 9, "steps shared a process"
    # the search used loky worker processes (seen while it ran), and ended them with its step
    assert metadata["search_placement"].startswith("search ran on loky with 2 processes")
    assert pids["candidate_model"] in {owner for owner, _ in ran[1].seen.values()}
    assert_nothing_left(set(pids.values()))


# -- celery --------------------------------------------------------------------------------------


def wait_for_log(proc: subprocess.Popen, log: Path, text: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{proc.args[0]} exited with {proc.returncode}:\n{log_tail(log)}")
        if log.exists() and text in log.read_text(errors="replace"):
            return
        time.sleep(0.25)
    pytest.fail(f"{text!r} not in {log} after {timeout:.0f}s:\n{log_tail(log)}")


def descendants(pid: int) -> set[int]:
    import psutil

    with contextlib.suppress(psutil.NoSuchProcess):
        return {c.pid for c in psutil.Process(pid).children(recursive=True)}
    return set()


def delete_queue(broker: str, queue: str) -> None:
    from kombu import Connection

    with Connection(broker, connect_timeout=5) as conn:
        conn.default_channel.queue_delete(queue)


@pytest.mark.services
def test_celery_executor_runs_steps_in_a_real_worker(tmp_path):
    require_rabbitmq()
    queue = f"mlassets-test-{uuid.uuid4().hex[:8]}"  # this test's own queue on the shared broker
    env = world(tmp_path, "celery", MLASSETS_CELERY_QUEUE=queue, MLASSETS_CELERY_CONCURRENCY="1")
    log = tmp_path / "worker.log"
    try:
        with running([str(ROOT / "deploy" / "celery" / "start"), "worker"], log, env=env) as w:
            wait_for_log(w, log, "ready.")
            ran = execute_training(tmp_path, env)
            pids, metadata = assert_one_training_run(env, ran)
            workers = descendants(w.pid)
            assert set(pids.values()) <= workers, "a step ran outside the celery worker"
            assert "Submitting celery task for step" in ran[0].stdout + ran[0].stderr
            # a prefork child is daemonic: the search kept its 2 jobs on threads
            assert metadata["search_placement"].startswith("search ran on threading with 2")
            # the worker lives on; nothing a step started does
            assert_nothing_left(set(pids.values()))
    finally:
        delete_queue(env["MLASSETS_CELERY_BROKER"], queue)


# -- dask ----------------------------------------------------------------------------------------


@pytest.mark.services
def test_dask_executor_runs_steps_on_a_real_cluster(tmp_path):
    address = f"tcp://{HOST}:{free_port()}"
    env = world(tmp_path, "dask", DASK_SCHEDULER_ADDRESS=address)
    log = tmp_path / "cluster.log"
    with running([str(ROOT / "deploy" / "dask" / "start"), "cluster"], log, env=env) as cluster:
        from distributed import Client

        with Client(address, timeout=60, set_as_default=False) as client:
            client.wait_for_workers(2, timeout=120)
            worker_pids = set(client.run(os.getpid).values())
        assert len(worker_pids) == 2 and worker_pids <= descendants(cluster.pid)
        pids, metadata = assert_one_training_run(env, execute_training(tmp_path, env))
        assert set(pids.values()) <= worker_pids, "a step ran outside the dask workers"
        # a dask worker is daemonic: the search kept its 2 jobs on threads
        assert metadata["search_placement"].startswith("search ran on threading with 2")
        assert_nothing_left(set(pids.values()))


@pytest.mark.services
def test_dask_search_from_the_profile_run_config(tmp_path):
    """deploy/dask/run_config.yaml sends the search's fits to the cluster (steps in process)."""
    address = f"tcp://{HOST}:{free_port()}"
    env = world(tmp_path, "dask", DASK_SCHEDULER_ADDRESS=address, MLASSETS_EXECUTOR="in_process")
    log = tmp_path / "cluster.log"
    config = yaml.safe_load((ROOT / "deploy" / "dask" / "run_config.yaml").read_text())
    # written for the bundled fraud model; this world serves it alone, under unprefixed names
    given = config["ops"]["fraud_detection__candidate_model"]["config"]
    training = {**given, **FAST_TRAINING, "n_jobs": -1}
    with running([str(ROOT / "deploy" / "dask" / "start"), "cluster"], log, env=env):
        from distributed import Client

        with Client(address, timeout=60, set_as_default=False) as client:
            client.wait_for_workers(2, timeout=120)
        _, metadata = assert_one_training_run(env, execute_training(tmp_path, env, training))
        assert metadata["search_placement"].startswith(f"search ran on 2 dask workers of {address}")


def test_unknown_executor_fails_the_load_naming_the_variable(tmp_path):
    env = {**cli_env(tmp_path, None), "MLASSETS_EXECUTOR": "spark"}
    proc = subprocess.run(
        [sys.executable, "-c", "import mlassets.definitions"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "MLASSETS_EXECUTOR='spark' is not an executor (known: in_process, multiprocess" in (
        proc.stderr
    )


def test_each_executor_name_builds_its_dagster_executor(monkeypatch):
    from mlassets.executors import executor_def

    names = {}
    for name in ("in_process", "multiprocess", "celery", "dask", "k8s_job"):
        monkeypatch.setenv("MLASSETS_EXECUTOR", name)
        names[name] = executor_def().name
    assert names == {
        "in_process": "in_process",
        "multiprocess": "multiprocess",
        "celery": "celery",
        "dask": "dask",
        "k8s_job": "k8s",
    }


def test_loading_the_code_location_imports_no_engine(tmp_path):
    """Celery, Dask and Kubernetes are imported only when MLASSETS_EXECUTOR chooses them."""
    engines = "celery", "dagster_celery", "dask", "distributed", "dagster_dask", "dagster_k8s"
    probe = "import json, sys, mlassets.definitions; print(json.dumps(sorted(sys.modules)))"
    found = {}
    for name in ("in_process", "multiprocess", "dask"):
        (tmp_path / name).mkdir()
        env = {**cli_env(tmp_path / name, None), "MLASSETS_EXECUTOR": name}
        out = subprocess.run(
            [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0, out.stderr[-2000:]
        loaded = {m.split(".")[0] for m in json.loads(out.stdout)}
        found[name] = sorted(loaded & set(engines))
    assert found == {
        "in_process": [],
        "multiprocess": [],
        "dask": ["dagster_dask", "dask", "distributed"],
    }
