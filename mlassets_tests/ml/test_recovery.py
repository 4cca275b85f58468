"""Recovery after a killed run (`mlassets.ml.recovery`, design invariant 6), with real parts only.

Real processes are SIGKILLed, real loky workers outlive their parent, a real MLflow SQLite store
holds the runs and versions. A dead pid is kept as an unreaped zombie of this process until the
test ends, so the kernel cannot hand it to another process meanwhile (`process_alive` counts a
zombie as dead). Every process a test starts is killed at teardown, pass or fail, including the
grandchildren that carry its pid in `MLASSETS_OWNER_PID`. Process scans are limited with `owners=`
to this test's own processes so that tests running next to these never lose theirs.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import time
import uuid

import pytest

from mlassets.ml.recovery import (
    HOST_TAG,
    OWNER_ENV,
    PID_TAG,
    abandon_orphan_versions,
    aliases_on,
    fail_dead_runs,
    kill_orphans,
    orphan_processes,
    process_alive,
    sweep,
)
from mlassets.ml.status import (
    ABANDONED,
    ABANDONED_REASON_TAG,
    FAILED_REASON_TAG,
    PENDING,
    REGISTERED,
    STATUS_TAG,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc"),
]

HOST = socket.gethostname()
BOUND_S = 20.0  # every wait below is polled up to this bound, then fails loudly


def wait_for(predicate, what: str, timeout_s: float = BOUND_S):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(0.02)


def state(pid: int) -> str | None:
    """The process state letter from /proc (independent of the code under test), None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0]
    except OSError:
        return None


def gone(pid: int) -> bool:
    return state(pid) in (None, "Z", "X")


def carriers_of(owner: int) -> list[int]:
    """Processes started with MLASSETS_OWNER_PID=<owner> (independent of the code under test)."""
    marker = f"{OWNER_ENV}={owner}".encode()
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/environ", "rb") as f:
                    if marker in f.read().split(b"\0"):
                        found.append(int(name))
            except OSError:
                pass
    return found


def end_gracefully(pids: list[int]) -> None:
    """SIGTERM, then SIGKILL what is left after a bound: loky's resource trackers ignore SIGTERM
    but unlink their semaphores and leave once the workers are gone; a SIGKILL first would leak
    the semaphores in /dev/shm."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 5.0
        while not all(gone(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.02)


@pytest.fixture
def spawn():
    """Start processes with telemetry off; end them and their marked descendants at teardown."""
    started: list[subprocess.Popen] = []

    def start(args: list[str], env: dict[str, str] | None = None, **kwargs) -> subprocess.Popen:
        full_env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", **(env or {})}
        proc = subprocess.Popen(args, env=full_env, **kwargs)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        descendants = [pid for pid in carriers_of(proc.pid) if pid != os.getpid()]
        proc.kill()  # first: while it lives, its resource trackers wait for it
        proc.wait(timeout=BOUND_S)
        end_gracefully(descendants)
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.fixture
def dead_pid(spawn) -> int:
    """The pid of a process that has exited, held as a zombie so that it cannot be reused."""
    proc = spawn(["true"])
    wait_for(lambda: state(proc.pid) == "Z", "`true` to exit")
    return proc.pid


def read_line(proc: subprocess.Popen, timeout_s: float = BOUND_S) -> str:
    """One line of a child's stdout, or fail after `timeout_s` (never hang on a stuck child)."""
    ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
    if not ready:
        pytest.fail(f"no output from process {proc.pid} within {timeout_s:.0f}s")
    line = proc.stdout.readline()
    if not line:
        pytest.fail(f"process {proc.pid} exited with {proc.wait()} before printing")
    return line.decode().strip()


def sigkill(proc: subprocess.Popen) -> None:
    """SIGKILL a child and wait until it has died (left a zombie until teardown reaps it)."""
    os.kill(proc.pid, signal.SIGKILL)
    wait_for(lambda: state(proc.pid) == "Z", f"process {proc.pid} to die")


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('recovery') / 'mlflow.db'}"


@pytest.fixture
def client(tracking_uri):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri, tracking_uri)


@pytest.fixture
def experiment(client, tmp_path) -> str:
    return client.create_experiment(
        f"recovery-{uuid.uuid4().hex[:8]}", artifact_location=(tmp_path / "artifacts").as_uri()
    )


def new_run(
    client, experiment: str, status: str = "RUNNING", host=HOST, pid=None, **extra_tags
) -> str:
    tags = dict(extra_tags)
    if host is not None:
        tags[HOST_TAG] = host
    if pid is not None:
        tags[PID_TAG] = str(pid)
    run_id = client.create_run(experiment, tags=tags).info.run_id
    if status != "RUNNING":
        client.set_terminated(run_id, status=status)
    return run_id


def new_version(client, name: str, run_id: str, status: str) -> str:
    if not client.search_registered_models(f"name='{name}'"):
        client.create_registered_model(name)
    mv = client.create_model_version(
        name, source=f"runs:/{run_id}/model", run_id=run_id, tags={STATUS_TAG: status}
    )
    return str(mv.version)


# --- processes ---------------------------------------------------------------------------------


def test_process_alive_counts_a_zombie_as_dead(dead_pid):
    assert process_alive(os.getpid())
    assert process_alive(1)  # another user's or not: os.kill(1, 0) semantics say alive
    assert state(dead_pid) == "Z"  # exists for os.kill, yet has exited
    assert not process_alive(dead_pid)
    for not_a_process in (0, -1, 2**40):  # 0 and -1 would address process groups
        assert not process_alive(not_a_process)


LOKY_PARENT = f"""
import os, sys, time
os.environ["{OWNER_ENV}"] = str(os.getpid())  # as the step process does before any work
from joblib.externals.loky import get_reusable_executor
# joblib's LokyBackend keeps idle workers 300 s (idle_worker_timeout); loky's own default is 10 s
ex = get_reusable_executor(max_workers=2, timeout=300)
ex.submit(time.sleep, 0.1).result()
print(" ".join(str(p.pid) for p in ex._processes.values()), flush=True)
time.sleep(600)
"""


def test_kill_orphans_ends_loky_workers_that_outlive_their_killed_parent(spawn):
    parent = spawn([sys.executable, "-c", LOKY_PARENT], stdout=subprocess.PIPE)
    workers = [int(p) for p in read_line(parent).split()]
    assert len(workers) == 2
    assert orphan_processes(owners={parent.pid}) == []  # the owner lives: nobody is an orphan

    sigkill(parent)

    # the bug this module exists for: the workers live on without their parent
    assert all(state(w) in ("S", "R") for w in workers), [state(w) for w in workers]
    orphans = orphan_processes(owners={parent.pid})
    assert set(workers) <= set(orphans)  # with them loky's resource trackers, same environment
    assert set(orphans) == set(carriers_of(parent.pid)) - {parent.pid}

    started = time.monotonic()
    killed = kill_orphans(owners={parent.pid})
    took = time.monotonic() - started

    assert set(killed) == set(orphans)
    assert all(gone(pid) for pid in orphans), {pid: state(pid) for pid in orphans}
    assert orphan_processes(owners={parent.pid}) == []
    # SIGTERM was enough for everyone: the trackers (which ignore SIGTERM) left once the
    # workers were gone, without waiting for the 5 s grace and a SIGKILL
    assert took < 4.0, f"kill_orphans took {took:.1f}s"
    assert kill_orphans(owners={parent.pid}) == []


SCANNER = """
import json, subprocess, sys
from mlassets.ml.recovery import orphan_processes
child = subprocess.Popen(["sleep", "60"])  # inherits the dead owner's pid, like a worker
print(json.dumps({"me": __import__("os").getpid(), "child": child.pid,
                  "orphans": orphan_processes(owners={int(sys.argv[1])})}), flush=True)
child.kill(); child.wait()
"""


def test_a_scan_never_returns_the_scanning_process_or_its_ancestors(spawn, dead_pid):
    import json

    scanner = spawn(
        [sys.executable, "-c", SCANNER, str(dead_pid)],
        env={OWNER_ENV: str(dead_pid)},
        stdout=subprocess.PIPE,
    )
    seen = json.loads(read_line(scanner))
    # the scanner carries the dead owner's pid too, yet only its child is an orphan to it
    assert seen["orphans"] == [seen["child"]]
    assert scanner.wait(timeout=BOUND_S) == 0


# --- MLflow runs -------------------------------------------------------------------------------

RUN_OWNER = f"""
import os, socket, sys, time
from mlflow import MlflowClient
client = MlflowClient(sys.argv[1])
run = client.create_run(sys.argv[2], tags={{"{HOST_TAG}": socket.gethostname(),
                                           "{PID_TAG}": str(os.getpid())}})
print(run.info.run_id, flush=True)
time.sleep(600)
"""


def test_fail_dead_runs_fails_only_the_run_whose_process_died(
    spawn, tracking_uri, client, experiment, dead_pid
):
    owner = spawn(
        [sys.executable, "-c", RUN_OWNER, tracking_uri, experiment],
        stdout=subprocess.PIPE,
    )
    killed_run = read_line(owner)
    live = new_run(client, experiment, pid=os.getpid())
    elsewhere = new_run(client, experiment, host="another-host", pid=dead_pid)
    untagged = new_run(client, experiment, host=None)
    finished = new_run(client, experiment, status="FINISHED", pid=dead_pid)
    assert client.get_run(killed_run).info.status == "RUNNING"

    sigkill(owner)
    failed = fail_dead_runs(client, [experiment], HOST)

    assert failed == [killed_run]
    run = client.get_run(killed_run)
    assert run.info.status == "FAILED"
    assert run.info.end_time is not None
    reason = run.data.tags[FAILED_REASON_TAG]
    assert "found RUNNING" in reason and str(owner.pid) in reason and HOST in reason
    for other in (live, elsewhere, untagged):  # alive, or we cannot tell: left alone
        assert client.get_run(other).info.status == "RUNNING"
        assert FAILED_REASON_TAG not in client.get_run(other).data.tags
    assert client.get_run(finished).info.status == "FINISHED"
    assert fail_dead_runs(client, [experiment], HOST) == []  # idempotent


def test_fail_dead_runs_reports_a_bad_pid_tag_and_goes_on(client, experiment, dead_pid):
    bad = new_run(client, experiment, pid="not-a-pid")
    dead = new_run(client, experiment, pid=dead_pid)
    errors: list[str] = []
    assert fail_dead_runs(client, [experiment], HOST, errors=errors) == [dead]
    assert len(errors) == 1 and bad in errors[0] and "not-a-pid" in errors[0]
    assert client.get_run(bad).info.status == "RUNNING"
    with pytest.raises(ValueError, match="not a pid"):  # without a list to collect into
        fail_dead_runs(client, [experiment], HOST)


def test_the_running_filter_is_understood_by_the_sqlite_store(client, experiment):
    running = new_run(client, experiment)
    new_run(client, experiment, status="FAILED")
    found = client.search_runs([experiment], filter_string="attributes.status = 'RUNNING'")
    assert [r.info.run_id for r in found] == [running]


# --- model versions ----------------------------------------------------------------------------


def test_only_pending_versions_nobody_will_finish_are_abandoned(client, experiment, dead_pid):
    name = f"model-{uuid.uuid4().hex[:8]}"
    failed_run = new_run(client, experiment, status="FAILED", pid=dead_pid)
    finished_run = new_run(client, experiment, status="FINISHED", pid=os.getpid())
    live_run = new_run(client, experiment, pid=os.getpid())
    dead_run = new_run(client, experiment, pid=dead_pid)
    elsewhere_run = new_run(client, experiment, host="another-host", pid=dead_pid)

    from_failed = new_version(client, name, failed_run, PENDING)
    from_live = new_version(client, name, live_run, PENDING)
    registered = new_version(client, name, failed_run, REGISTERED)
    from_dead = new_version(client, name, dead_run, PENDING)
    from_elsewhere = new_version(client, name, elsewhere_run, PENDING)
    from_finished = new_version(client, name, finished_run, PENDING)
    client.set_registered_model_alias(name, "production", from_finished)  # should never happen

    abandoned = abandon_orphan_versions(client, name, HOST)

    assert sorted(abandoned, key=int) == [from_failed, from_dead, from_finished]
    assert all(isinstance(v, str) for v in abandoned)

    def tags(version):
        return client.get_model_version(name, version).tags

    assert "ended FAILED" in tags(from_failed)[ABANDONED_REASON_TAG]
    assert "ended FINISHED" in tags(from_finished)[ABANDONED_REASON_TAG]
    assert f"process {dead_pid} has died" in tags(from_dead)[ABANDONED_REASON_TAG]
    for version in abandoned:
        assert tags(version)[STATUS_TAG] == ABANDONED
    for version, status in (
        (from_live, PENDING),
        (from_elsewhere, PENDING),
        (registered, REGISTERED),
    ):
        assert tags(version) == {STATUS_TAG: status}
    # the alias is left where it was, and reported
    assert client.get_model_version_by_alias(name, "production").version == int(from_finished)
    assert aliases_on(client, name, abandoned) == {"production": from_finished}
    assert client.get_run(dead_run).info.status == "RUNNING"  # runs are fail_dead_runs's job
    assert abandon_orphan_versions(client, name, HOST) == []  # idempotent


def test_a_version_whose_run_is_gone_is_abandoned(client, experiment):
    name = f"model-{uuid.uuid4().hex[:8]}"
    run_id = new_run(client, experiment, status="FAILED")
    version = new_version(client, name, run_id, PENDING)
    client.delete_run(run_id)
    # a deleted run still answers get_run (FAILED), so the version is judged by its status
    assert abandon_orphan_versions(client, name, HOST) == [version]
    assert abandon_orphan_versions(client, f"no-such-{name}", HOST) == []


# --- the sweep ---------------------------------------------------------------------------------


def test_sweep_recovers_everything_a_killed_run_left_and_reports_it(
    spawn, client, experiment, dead_pid
):
    name = f"model-{uuid.uuid4().hex[:8]}"
    dead_run = new_run(client, experiment, pid=dead_pid, dagster_run_id="dagster-run-1")
    live_run = new_run(client, experiment, pid=os.getpid(), dagster_run_id="dagster-run-2")
    bad_run = new_run(client, experiment, pid="-3")
    orphan_version = new_version(client, name, dead_run, PENDING)
    live_version = new_version(client, name, live_run, PENDING)
    worker = spawn(["sleep", "60"], env={OWNER_ENV: str(dead_pid)})  # a left-behind worker

    report = sweep(client, [experiment], name, HOST, owners={dead_pid})

    assert report["host"] == HOST
    assert report["failed_runs"] == [dead_run]  # failed first, so its version is judged next
    assert report["dagster_runs"] == ["dagster-run-1"]  # for the caller to report failed
    assert report["abandoned_versions"] == [orphan_version]
    assert report["aliases_on_abandoned"] == {}
    assert report["killed_processes"] == [worker.pid]
    assert len(report["errors"]) == 1 and bad_run in report["errors"][0]
    assert client.get_run(dead_run).info.status == "FAILED"
    assert client.get_run(live_run).info.status == "RUNNING"
    assert client.get_model_version(name, live_version).tags[STATUS_TAG] == PENDING
    assert worker.wait(timeout=BOUND_S) == -signal.SIGTERM

    again = sweep(client, [experiment], name, HOST, owners={dead_pid})
    assert again["failed_runs"] == again["abandoned_versions"] == again["killed_processes"] == []
