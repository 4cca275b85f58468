"""Recovery after a killed run (`mlassets.ml.recovery`, `mlassets.ml.owner`; design invariant 6),
with real parts only.

Real processes are SIGKILLed, real loky workers outlive their parent, a real MLflow SQLite store
holds the runs and versions, and a real second pid namespace (`unshare --pid --fork --mount-proc`)
holds a run and a worker that share this host and boot but not this namespace. Every owner record
is a real process's identity, read while it lived; only the "other boot", "other host" and "old
record" owners are edited copies of one (no second boot can be had in a test). A dead owner is kept
as an unreaped zombie of this process until the test ends, so the kernel cannot hand its pid to
another process meanwhile. Every process a test starts is killed at teardown, pass or fail,
including the grandchildren that carry its identity in `MLASSETS_OWNER` (a namespace's processes
die with its init, which `--kill-child` ties to `unshare`). Process scans are limited with
`owners=` to this test's own processes so that tests running next to these never lose theirs.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import replace

import pytest

from mlassets.ml.owner import (
    HOST_TAG,
    LEGACY_OWNER_ENV,
    OWNER_ENV,
    OWNER_TAG,
    PID_TAG,
    Identity,
    State,
    current,
    identity_of,
    judge,
)
from mlassets.ml.recovery import (
    abandon_orphan_versions,
    aliases_on,
    fail_dead_runs,
    kill_orphans,
    orphan_processes,
    process_alive,
    run_verdict,
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


def stat_fields(pid: int | str) -> list[str] | None:
    """/proc/<pid>/stat from field 3 on (independent of the code under test), None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()
    except OSError:
        return None


def state(pid: int) -> str | None:
    """The process state letter from /proc, None if gone."""
    fields = stat_fields(pid)
    return fields[0] if fields else None


def gone(pid: int) -> bool:
    return state(pid) in (None, "Z", "X")


def alive(pid: int) -> bool:
    """Running or sleeping (a process just started may not have reached its sleep yet)."""
    return state(pid) in ("S", "R")


def carriers_of(owner: int | str) -> list[int]:
    """Processes started with an `MLASSETS_OWNER` naming pid `owner` (an int) or equal to `owner`
    (a str), read from /proc independently of the code under test."""
    prefix = f"{OWNER_ENV}=".encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                entries = f.read().split(b"\0")
        except OSError:
            continue
        for entry in entries:
            if entry.startswith(prefix):
                value = entry[len(prefix) :].decode()
                if value == owner or f"pid={owner}" in value.split():
                    found.append(int(name))
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
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()


@pytest.fixture
def dead_pid(spawn) -> int:
    """The pid of a process that has exited, held as a zombie so that it cannot be reused."""
    proc = spawn(["true"])
    wait_for(lambda: state(proc.pid) == "Z", "`true` to exit")
    return proc.pid


@pytest.fixture
def dead_owner(spawn) -> Identity:
    """The identity of a real process, read while it lived; it is dead now (a zombie, see above)."""
    proc = spawn(["sleep", "600"])
    identity = identity_of(proc.pid)
    assert identity.complete, identity
    sigkill(proc)
    return identity


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
    client,
    experiment: str,
    status: str = "RUNNING",
    owner: Identity | None = None,
    tags: dict[str, str] | None = None,
) -> str:
    """A run owned by `owner` (its tags as a step writes them), or tagged with `tags` as given."""
    tags = {**(owner.tags() if owner else {}), **(tags or {})}
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


# --- identities --------------------------------------------------------------------------------


@pytest.mark.unit
def test_an_identity_is_what_proc_says_of_the_process():
    me = current()
    with open("/proc/sys/kernel/random/boot_id") as f:
        boot_id = f.read().strip()
    assert me == Identity(
        host=HOST,
        pid=os.getpid(),
        start_ticks=int(stat_fields("self")[19]),  # field 22: start time in ticks after boot
        pid_ns=os.stat("/proc/self/ns/pid").st_ino,
        boot_id=boot_id,
        time_ns=os.stat("/proc/self/ns/time").st_ino,
    )
    assert identity_of(os.getpid()) == me
    assert str(me) == (
        f"host={HOST} pid={os.getpid()} start_ticks={me.start_ticks} pid_ns={me.pid_ns} "
        f"boot_id={boot_id} time_ns={me.time_ns}"
    )


@pytest.mark.unit
def test_an_identity_survives_its_record_and_a_malformed_one_is_refused():
    me = current()
    assert Identity.parse(str(me)) == me
    assert Identity.parse(f"{me} written_by=a-newer-mlassets") == me  # unknown keys: ignored
    assert Identity.from_tags(me.tags()) == me
    assert me.tags() == {HOST_TAG: HOST, PID_TAG: str(os.getpid()), OWNER_TAG: str(me)}
    assert Identity.from_tags({}) is None  # a run that names no owner
    # a record before issue 24: host and pid, nothing that says which namespace or process
    old = Identity.from_tags({HOST_TAG: HOST, PID_TAG: "42"})
    assert old == Identity(HOST, 42) and not old.complete
    # plain tags re-written by an older step process since: the full record no longer holds
    assert Identity.from_tags({**me.tags(), PID_TAG: "42"}) == Identity(HOST, 42)
    for bad in ("pid=12", "host=h", "host=h pid=0", "host=h pid=-3", "host=h pid=x"):
        with pytest.raises(ValueError, match="no host or pid|is not a pid"):
            Identity.parse(bad)
    with pytest.raises(ValueError, match="start_ticks='soon' is not a number"):
        Identity.parse(f"host=h pid=12 start_ticks=soon pid_ns={me.pid_ns}")


def test_judge_calls_a_live_process_alive_and_a_dead_or_replaced_one_dead(spawn):
    proc = spawn(["sleep", "600"])
    recorded = identity_of(proc.pid)
    assert judge(recorded).state is State.ALIVE
    assert judge(current()).state is State.ALIVE

    # the same pid held by another process (another start time): the recorded one is dead
    earlier = replace(recorded, start_ticks=recorded.start_ticks - 1)
    verdict = judge(earlier)
    assert verdict.dead
    assert f"started at tick {recorded.start_ticks}" in verdict.reason
    assert alive(proc.pid)  # judging touched nothing

    sigkill(proc)  # a zombie: exited, not yet reaped
    verdict = judge(recorded)
    assert verdict.dead and "has exited" in verdict.reason
    proc.wait()  # reaped: the pid is free
    verdict = judge(recorded)
    assert verdict.dead and f"process {proc.pid} is gone" in verdict.reason


def test_an_owner_it_cannot_prove_dead_is_unknown_with_the_reason(dead_owner):
    assert judge(dead_owner).dead  # the record as it is: provably dead, here
    for edited, why in (
        (replace(dead_owner, boot_id=str(uuid.uuid4())), "in boot"),
        (replace(dead_owner, pid_ns=dead_owner.pid_ns + 1), "in pid namespace"),
        (replace(dead_owner, host="another-host"), "on host 'another-host'"),
        (Identity(HOST, dead_owner.pid), "without boot id, pid namespace and start time"),
    ):
        verdict = judge(edited)
        assert verdict.state is State.UNKNOWN, edited
        assert why in verdict.reason


TIME_NS_OWNER = """
from mlassets.ml.owner import current
print(current(), flush=True)
import time; time.sleep(600)
"""


def test_a_start_time_read_in_another_time_namespace_proves_nothing(spawn):
    """The kernel shifts the start times a process reads by its time namespace's boot offset, so
    an owner in such a namespace (same pid namespace) records a start time that differs from the
    one read here: without the time namespace in the record, a live owner looked like a reused
    pid, and its run was failed."""
    proc = spawn(
        ["unshare", "--time", "--boottime", "100000", "--fork", "--kill-child"]
        + [sys.executable, "-c", TIME_NS_OWNER],
        stdout=subprocess.PIPE,
    )
    owner = Identity.parse(read_line(proc))
    here = current()
    assert owner.pid_ns == here.pid_ns and owner.time_ns != here.time_ns
    seen_here = identity_of(owner.pid)  # the same live process, read from this namespace
    assert owner.start_ticks - seen_here.start_ticks == 100000 * os.sysconf("SC_CLK_TCK")
    verdict = judge(owner)
    assert verdict.state is State.UNKNOWN
    assert f"in time namespace {owner.time_ns}" in verdict.reason
    assert judge(replace(owner, time_ns=here.time_ns)).dead  # what a record without it gives
    assert alive(owner.pid)


PROC_OF_THE_PARENT_NAMESPACE = """
import dataclasses, json
from mlassets.ml.owner import current, judge, proc_is_own
me = current()
absent = dataclasses.replace(me, pid=30000, start_ticks=1)  # no pid 30000 in here: only pid 1
print(json.dumps({"me": me.pid, "own": proc_is_own(),
                  "judged": [[v.state.value, v.reason] for v in (judge(me), judge(absent))]}))
"""


def test_where_proc_shows_another_namespace_nothing_is_proven(spawn):
    # `unshare --pid --fork` without a new /proc: pid 1 of the new namespace reads the parent's
    proc = spawn(
        ["unshare", "--pid", "--fork", "--kill-child"]
        + [sys.executable, "-c", PROC_OF_THE_PARENT_NAMESPACE],
        stdout=subprocess.PIPE,
    )
    seen = json.loads(read_line(proc))
    assert seen["me"] == 1 and seen["own"] is False
    for verdict in seen["judged"]:
        assert verdict == ["unknown", "/proc here shows another pid namespace than this one"]
    assert proc.wait(timeout=BOUND_S) == 0


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
from mlassets.ml.owner import current
os.environ["{OWNER_ENV}"] = str(current())  # as the step process does before any work
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
    assert kill_orphans(owners={parent.pid}) == []  # a live owner's workers are never killed
    assert all(alive(w) for w in workers)

    sigkill(parent)

    # the bug this module exists for: the workers live on without their parent
    assert all(alive(w) for w in workers), [state(w) for w in workers]
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
child = subprocess.Popen(["sleep", "60"])  # inherits the dead owner's identity, like a worker
print(json.dumps({"me": __import__("os").getpid(), "child": child.pid,
                  "orphans": orphan_processes(owners={int(sys.argv[1])})}), flush=True)
child.kill(); child.wait()
"""


def test_a_scan_never_returns_the_scanning_process_or_its_ancestors(spawn, dead_owner):
    scanner = spawn(
        [sys.executable, "-c", SCANNER, str(dead_owner.pid)],
        env={OWNER_ENV: str(dead_owner)},
        stdout=subprocess.PIPE,
    )
    seen = json.loads(read_line(scanner))
    # the scanner carries the dead owner's identity too, yet only its child is an orphan to it
    assert seen["orphans"] == [seen["child"]]
    assert scanner.wait(timeout=BOUND_S) == 0


def test_a_worker_of_an_old_owner_record_is_never_an_orphan(spawn, dead_owner):
    # started before issue 24: a bare pid names no namespace, so it could be anybody's
    old = spawn(["sleep", "600"], env={LEGACY_OWNER_ENV: str(dead_owner.pid)})
    new = spawn(["sleep", "600"], env={OWNER_ENV: str(dead_owner)})
    assert orphan_processes(owners={dead_owner.pid}) == [new.pid]
    assert kill_orphans(owners={dead_owner.pid}) == [new.pid]
    assert new.wait(timeout=BOUND_S) == -signal.SIGTERM
    assert alive(old.pid)


# --- MLflow runs -------------------------------------------------------------------------------

RUN_OWNER = """
import json, os, sys, time
from mlflow import MlflowClient
from mlassets.ml.owner import current
me = current()
run = MlflowClient(sys.argv[1]).create_run(sys.argv[2], tags=me.tags())  # as a step tags its run
print(json.dumps({"run": run.info.run_id, "owner": str(me)}), flush=True)
time.sleep(600)
"""


def test_fail_dead_runs_fails_only_the_run_whose_owner_died(
    spawn, tracking_uri, client, experiment, dead_owner
):
    owner = spawn(
        [sys.executable, "-c", RUN_OWNER, tracking_uri, experiment],
        stdout=subprocess.PIPE,
    )
    seen = json.loads(read_line(owner))
    killed_run = seen["run"]
    assert Identity.parse(seen["owner"]) == identity_of(owner.pid)  # recorded as it is
    live = new_run(client, experiment, owner=current())
    elsewhere = new_run(client, experiment, owner=replace(dead_owner, host="another-host"))
    untagged = new_run(client, experiment)
    finished = new_run(client, experiment, status="FINISHED", owner=dead_owner)
    left: dict[str, str] = {}
    # a live owner in this very namespace is never swept
    assert fail_dead_runs(client, [experiment], left_alone=left) == []
    assert client.get_run(killed_run).info.status == "RUNNING"
    assert set(left) == {elsewhere, untagged}  # unknown, with a reason; the live ones are alive

    sigkill(owner)
    left.clear()
    failed = fail_dead_runs(client, [experiment], left_alone=left)

    assert failed == [killed_run]
    run = client.get_run(killed_run)
    assert run.info.status == "FAILED"
    assert run.info.end_time is not None
    reason = run.data.tags[FAILED_REASON_TAG]
    assert reason.startswith(f"found RUNNING after its owner had died: process {owner.pid} ")
    assert f"on {HOST}" in reason
    assert "on host 'another-host'" in left[elsewhere]
    assert "names no owner" in left[untagged]
    for other in (live, elsewhere, untagged):  # alive, or we cannot tell: left alone
        assert client.get_run(other).info.status == "RUNNING"
        assert FAILED_REASON_TAG not in client.get_run(other).data.tags
    assert client.get_run(finished).info.status == "FINISHED"
    assert fail_dead_runs(client, [experiment]) == []  # idempotent


def test_fail_dead_runs_reports_a_bad_owner_tag_and_goes_on(client, experiment, dead_owner):
    bad = new_run(client, experiment, tags={HOST_TAG: HOST, PID_TAG: "not-a-pid"})
    dead = new_run(client, experiment, owner=dead_owner)
    errors: list[str] = []
    assert fail_dead_runs(client, [experiment], errors=errors) == [dead]
    assert len(errors) == 1 and bad in errors[0] and "not-a-pid" in errors[0]
    assert client.get_run(bad).info.status == "RUNNING"
    with pytest.raises(ValueError, match="is not a pid"):  # without a list to collect into
        fail_dead_runs(client, [experiment])


def test_the_running_filter_is_understood_by_the_sqlite_store(client, experiment):
    from mlassets.ml.status import RUNNING_FILTER

    running = new_run(client, experiment)
    new_run(client, experiment, status="FAILED")
    found = client.search_runs([experiment], filter_string=RUNNING_FILTER)
    assert [r.info.run_id for r in found] == [running]


# --- model versions ----------------------------------------------------------------------------


def test_only_pending_versions_nobody_will_finish_are_abandoned(client, experiment, dead_owner):
    name = f"model-{uuid.uuid4().hex[:8]}"
    failed_run = new_run(client, experiment, status="FAILED", owner=dead_owner)
    finished_run = new_run(client, experiment, status="FINISHED", owner=current())
    live_run = new_run(client, experiment, owner=current())
    dead_run = new_run(client, experiment, owner=dead_owner)
    elsewhere_run = new_run(client, experiment, owner=replace(dead_owner, host="another-host"))

    from_failed = new_version(client, name, failed_run, PENDING)
    from_live = new_version(client, name, live_run, PENDING)
    registered = new_version(client, name, failed_run, REGISTERED)
    from_dead = new_version(client, name, dead_run, PENDING)
    from_elsewhere = new_version(client, name, elsewhere_run, PENDING)
    from_finished = new_version(client, name, finished_run, PENDING)
    client.set_registered_model_alias(name, "production", from_finished)  # should never happen

    abandoned = abandon_orphan_versions(client, name)

    assert sorted(abandoned, key=int) == [from_failed, from_dead, from_finished]
    assert all(isinstance(v, str) for v in abandoned)

    def tags(version):
        return client.get_model_version(name, version).tags

    assert "ended FAILED" in tags(from_failed)[ABANDONED_REASON_TAG]
    assert "ended FINISHED" in tags(from_finished)[ABANDONED_REASON_TAG]
    assert (
        f"its owner died: process {dead_owner.pid} has exited"
        in (tags(from_dead)[ABANDONED_REASON_TAG])
    )
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
    assert abandon_orphan_versions(client, name) == []  # idempotent


def test_a_version_whose_run_is_gone_is_abandoned(client, experiment):
    name = f"model-{uuid.uuid4().hex[:8]}"
    run_id = new_run(client, experiment, status="FAILED")
    version = new_version(client, name, run_id, PENDING)
    client.delete_run(run_id)
    # a deleted run still answers get_run (FAILED), so the version is judged by its status
    assert abandon_orphan_versions(client, name) == [version]
    assert abandon_orphan_versions(client, f"no-such-{name}") == []


# --- the sweep ---------------------------------------------------------------------------------


def test_sweep_recovers_everything_a_killed_run_left_and_reports_it(
    spawn, client, experiment, dead_owner
):
    name = f"model-{uuid.uuid4().hex[:8]}"
    dead_run = new_run(client, experiment, owner=dead_owner, tags={"dagster_run_id": "dr-1"})
    live_run = new_run(client, experiment, owner=current(), tags={"dagster_run_id": "dr-2"})
    bad_run = new_run(client, experiment, tags={HOST_TAG: HOST, PID_TAG: "-3"})
    orphan_version = new_version(client, name, dead_run, PENDING)
    live_version = new_version(client, name, live_run, PENDING)
    worker = spawn(["sleep", "60"], env={OWNER_ENV: str(dead_owner)})  # a left-behind worker

    report = sweep(client, [experiment], name, owners={dead_owner.pid})

    assert report["host"] == HOST and report["owner"] == str(current())
    assert report["failed_runs"] == [dead_run]  # failed first, so its version is judged next
    assert report["dagster_runs"] == ["dr-1"]  # for the caller to report failed
    assert report["abandoned_versions"] == [orphan_version]
    assert report["aliases_on_abandoned"] == {}
    assert report["killed_processes"] == [worker.pid]
    assert report["left_alone"] == {}
    assert len(report["errors"]) == 1 and bad_run in report["errors"][0]
    assert client.get_run(dead_run).info.status == "FAILED"
    assert client.get_run(live_run).info.status == "RUNNING"
    assert client.get_model_version(name, live_version).tags[STATUS_TAG] == PENDING
    assert worker.wait(timeout=BOUND_S) == -signal.SIGTERM

    again = sweep(client, [experiment], name, owners={dead_owner.pid})
    assert again["failed_runs"] == again["abandoned_versions"] == again["killed_processes"] == []


def test_a_reused_pid_counts_as_dead_and_its_new_holder_is_untouched(spawn, client, experiment):
    name = f"model-{uuid.uuid4().hex[:8]}"
    holder = spawn(["sleep", "600"])  # lives on, holding the pid the record names
    now = identity_of(holder.pid)
    recorded = replace(now, start_ticks=now.start_ticks - 1)  # the owner that held it before
    run = new_run(client, experiment, owner=recorded)
    version = new_version(client, name, run, PENDING)
    worker = spawn(["sleep", "600"], env={OWNER_ENV: str(recorded)})

    report = sweep(client, [experiment], name, owners={holder.pid})

    assert report["failed_runs"] == [run]
    reason = client.get_run(run).data.tags[FAILED_REASON_TAG]
    assert f"pid {holder.pid} now belongs to a process started at tick {now.start_ticks}" in reason
    assert report["abandoned_versions"] == [version]
    assert report["killed_processes"] == [worker.pid]
    assert worker.wait(timeout=BOUND_S) == -signal.SIGTERM
    assert alive(holder.pid) and holder.poll() is None  # never signalled
    assert report["errors"] == []


def test_owners_it_cannot_prove_dead_are_left_alone_and_reported(spawn, client, experiment):
    """Each record below names a process that is dead, and a judge by host and pid alone would
    fail its run; none is proven dead from here, so everything stays as it was, with the reason.
    The old record is how a run started before issue 24 looks: it stays RUNNING, its version
    pending, until someone fails it by hand (the sweep names it in `left_alone` every time)."""
    name = f"model-{uuid.uuid4().hex[:8]}"
    proc = spawn(["sleep", "600"])
    dead = identity_of(proc.pid)
    sigkill(proc)
    assert judge(dead).dead
    other_boot = replace(dead, boot_id=str(uuid.uuid4()))  # before a reboot, or elsewhere
    other_host = replace(dead, host="another-host")
    old = {HOST_TAG: HOST, PID_TAG: str(dead.pid)}  # the tags of old: host and pid only
    # the plain tags re-written by an older step process after a newer one wrote the full record
    retagged = {**current().tags(), PID_TAG: str(dead.pid)}
    unproven = "without boot id, pid namespace and start time"
    runs = [
        (
            f"in boot {other_boot.boot_id}, this machine is in boot",
            new_run(client, experiment, owner=other_boot),
        ),
        ("on host 'another-host'", new_run(client, experiment, owner=other_host)),
        (unproven, new_run(client, experiment, tags=old)),
        (unproven, new_run(client, experiment, tags=retagged)),
    ]
    versions = [new_version(client, name, run, PENDING) for _, run in runs]
    workers = [spawn(["sleep", "600"], env={OWNER_ENV: str(o)}) for o in (other_boot, other_host)]
    old_worker = spawn(["sleep", "600"], env={LEGACY_OWNER_ENV: str(dead.pid)})

    report = sweep(client, [experiment], name, owners={dead.pid})

    assert report["failed_runs"] == report["abandoned_versions"] == []
    assert report["killed_processes"] == [] and report["errors"] == []
    assert set(report["left_alone"]) == {run for _, run in runs}
    for why, run in runs:
        assert why in report["left_alone"][run], (why, report["left_alone"][run])
        assert run_verdict(client.get_run(run)).state is State.UNKNOWN
        assert client.get_run(run).info.status == "RUNNING"
    for version in versions:
        assert client.get_model_version(name, version).tags == {STATUS_TAG: PENDING}
    for worker in [*workers, old_worker]:
        assert alive(worker.pid)


# --- another pid namespace, for real -----------------------------------------------------------

NS_OWNER = """
import json, os, subprocess, sys, time
from mlflow import MlflowClient
from mlassets.ml.owner import OWNER_ENV, current
from mlassets.ml.status import PENDING, STATUS_TAG
me = current()
os.environ[OWNER_ENV] = str(me)  # as the step process does before any work
client = MlflowClient(sys.argv[1])
run = client.create_run(sys.argv[2], tags=me.tags()).info.run_id
version = client.create_model_version(sys.argv[3], source=f"runs:/{run}/model", run_id=run,
                                      tags={STATUS_TAG: PENDING}).version
worker = subprocess.Popen(["sleep", "600"])  # a worker that outlives this owner
print(json.dumps({"run": run, "version": str(version), "owner": str(me), "worker": worker.pid}),
      flush=True)
time.sleep(600)
"""

# pid 1 of the new namespace: starts the owner at a chosen pid, SIGKILLs it, then sweeps when told
NS_INIT = f"""
import json, os, signal, subprocess, sys
uri, experiment, name, pid = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
with open("/proc/sys/kernel/ns_last_pid", "w") as f:  # the next process gets `pid`
    f.write(str(pid - 1))
owner = subprocess.Popen([sys.executable, "-c", {NS_OWNER!r}, uri, experiment, name],
                         stdout=subprocess.PIPE)
seen = json.loads(owner.stdout.readline())
owner.kill()
owner.wait()  # reaped: the pid is free in here; its worker is now this process's child
print(json.dumps(seen), flush=True)
sys.stdin.readline()
from mlflow import MlflowClient
from mlassets.ml.recovery import sweep
print(json.dumps(sweep(MlflowClient(uri), [experiment], name, owners={{pid}})), flush=True)
sys.stdin.readline()
"""


def free_pid() -> int:
    """A pid no process holds in this namespace now, high enough not to be handed out soon: a
    judge by pid alone would call an owner recorded with it dead."""
    with open("/proc/sys/kernel/pid_max") as f:
        pid_max = int(f.read())
    return next(p for p in range(pid_max - 100, 300, -1) if not os.path.exists(f"/proc/{p}"))


def test_a_run_of_another_pid_namespace_is_left_to_a_sweep_in_that_namespace(
    spawn, tracking_uri, client, experiment
):
    """The issue's case: a container sharing this host name (and kernel) but not this pid
    namespace. Its killed step's run, version and worker are left alone from here, with the
    reason; a sweep inside its namespace proves the owner dead and recovers them."""
    name = f"model-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    pid = free_pid()
    init = spawn(
        ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"]
        + [sys.executable, "-c", NS_INIT, tracking_uri, experiment, name, str(pid)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    seen = json.loads(read_line(init, timeout_s=60))
    owner = Identity.parse(seen["owner"])
    assert owner.pid == pid and owner.host == HOST
    assert owner.boot_id == current().boot_id and owner.pid_ns != current().pid_ns
    # the worker as this namespace sees it (another number than in its own)
    (worker,) = carriers_of(seen["owner"])
    assert alive(worker)

    report = sweep(client, [experiment], name, owners={pid})

    assert report["failed_runs"] == report["abandoned_versions"] == []
    assert report["killed_processes"] == [] and report["errors"] == []
    assert f"in pid namespace {owner.pid_ns}" in report["left_alone"][seen["run"]]
    assert client.get_run(seen["run"]).info.status == "RUNNING"
    assert client.get_model_version(name, seen["version"]).tags[STATUS_TAG] == PENDING
    assert alive(worker)

    init.stdin.write(b"sweep\n")
    init.stdin.flush()
    inside = json.loads(read_line(init, timeout_s=60))

    assert inside["failed_runs"] == [seen["run"]]
    assert inside["abandoned_versions"] == [seen["version"]]
    assert inside["killed_processes"] == [seen["worker"]]  # its number in its own namespace
    assert inside["errors"] == [] and inside["left_alone"] == {}
    run = client.get_run(seen["run"])
    assert run.info.status == "FAILED"
    assert f"process {pid} is gone" in run.data.tags[FAILED_REASON_TAG]
    wait_for(lambda: gone(worker), f"worker {worker} to end")
