"""Recovery after a killed run: fail its MLflow run, abandon its half-registered versions, end its
orphan processes (design invariant 6).

A SIGKILLed step process cannot clean up after itself, so someone else must: this module is that
someone, a sweep that is safe to run at any time, from any process on the host, as often as wanted.
It decides only from what a live process leaves behind and a dead one cannot take back:

- the MLflow run's tags `mlassets.host` and `mlassets.pid` (which process executes the run's steps);
- the environment variable `MLASSETS_OWNER_PID`, which the step process exports before any work so
  that every process it starts (joblib's loky workers, which outlive a SIGKILLed parent) inherits it;
- the model version tag `mlassets.status` (`pending` while the registration step works, `registered`
  once it finished) and the version's `run_id`.

What it cannot tell, it leaves alone: a run on another host, or one without the tags, may be alive.
Every judgement errs on the side of "still alive" (a reused pid looks alive), so a sweep never fails a
live run or kills a live run's worker; at worst it misses a dead one until the pid is free again.

Linux only for the process part (`/proc`); elsewhere `orphan_processes` finds nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Collection, Iterator
from typing import Any

from mlassets.ml.status import (
    ABANDONED,
    ABANDONED_REASON_TAG,
    FAILED_REASON_TAG,
    PENDING,
    RUN_FAILED,
    RUN_RUNNING,
    RUNNING_FILTER,
    STATUS_TAG,
)

log = logging.getLogger(__name__)

OWNER_ENV = "MLASSETS_OWNER_PID"
HOST_TAG = "mlassets.host"
PID_TAG = "mlassets.pid"
DAGSTER_RUN_TAG = "dagster_run_id"  # set by dagster-mlflow on the Dagster run's MLflow run

_PROC = "/proc"


# --- processes ---------------------------------------------------------------------------------


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) from /proc/<pid>/stat, or None when it cannot be read."""
    try:
        with open(f"{_PROC}/{pid}/stat", "rb") as f:
            data = f.read().decode(errors="replace")
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may itself hold spaces or ')'
    fields = data.rpartition(")")[2].split()
    try:
        return fields[0], int(fields[1])
    except (IndexError, ValueError):
        return None


def process_alive(pid: int) -> bool:
    """Whether process `pid` exists and has not exited (a zombie has exited: it only awaits reaping).

    `os.kill(pid, 0)` semantics: a process we may not signal (PermissionError) is alive. Killed
    orphans are reparented to pid 1 or a subreaper, which in a container may never reap them, so
    the zombie check is what makes "dead" observable there.
    """
    if pid <= 0:  # 0 and negative pids address process groups, never one process
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    except (OverflowError, OSError):  # beyond pid_t or otherwise no such process
        return False
    stat = _stat(pid)
    return stat is None or stat[0] not in ("Z", "X", "x")


def _ancestors(pid: int) -> set[int]:
    """`pid` and every process above it (never to be signalled by a sweep)."""
    seen = {pid}
    while True:
        stat = _stat(pid)
        if stat is None or stat[1] <= 0 or stat[1] in seen:
            return seen
        pid = stat[1]
        seen.add(pid)


def _owner_of(pid: int) -> int | None:
    """The `MLASSETS_OWNER_PID` a process was started with, or None (unset, unreadable, bad)."""
    try:
        with open(f"{_PROC}/{pid}/environ", "rb") as f:
            environ = f.read()
    except OSError:  # gone, or another user's process
        return None
    prefix = OWNER_ENV.encode() + b"="
    for entry in environ.split(b"\0"):
        if entry.startswith(prefix):
            try:
                return int(entry[len(prefix) :])
            except ValueError:
                return None
    return None


def _pids() -> Iterator[int]:
    try:
        names = os.listdir(_PROC)
    except OSError:
        return
    for name in names:
        if name.isdigit():
            yield int(name)


def _orphans(owner_alive: Callable[[int], bool], owners: Collection[int] | None) -> dict[int, int]:
    """{orphan pid: its dead owner's pid} (see `orphan_processes`)."""
    protected = _ancestors(os.getpid())
    owners = None if owners is None else set(owners)
    verdicts: dict[int, bool] = {}
    found = {}
    for pid in _pids():
        if pid in protected:
            continue
        owner = _owner_of(pid)
        if owner is None or owner == pid or (owners is not None and owner not in owners):
            continue
        if owner not in verdicts:
            verdicts[owner] = owner_alive(owner)
        if not verdicts[owner] and process_alive(pid):
            found[pid] = owner
    return found


def orphan_processes(
    owner_alive: Callable[[int], bool] = process_alive,
    owners: Collection[int] | None = None,
) -> list[int]:
    """Pids of live processes started (directly or not) by a step process that has died.

    A process is an orphan when its environment holds `MLASSETS_OWNER_PID=<p>`, `p` is not the
    process itself and `p` is not alive. `/proc/<pid>/environ` is the environment the process was
    *started* with, which is why it works for children (loky execs its workers with `os.environ`)
    and why the owner, which exported the variable later, never matches itself. Processes forked
    without exec (multiprocessing's "fork" start method) keep their parent's original environment
    block and are not found. Processes we may not read (another user's) are skipped. `owners`
    limits the scan to those owner pids. The current process and its ancestors are never returned.
    """
    return sorted(_orphans(owner_alive, owners))


def _signal(pid: int, owner: int, sig: int) -> bool:
    """Send `sig` to `pid` if it is still the orphan we found; False if it is gone or not ours.

    With a pidfd the check and the signal address the same process even if `pid` is reused in
    between; without one (old kernels, seccomp) the window is a few microseconds.
    """
    pidfd = None
    with contextlib.suppress(AttributeError, OSError):
        pidfd = os.pidfd_open(pid)
    try:
        if _owner_of(pid) != owner:
            return False
        if pidfd is not None:
            signal.pidfd_send_signal(pidfd, sig)
        else:
            os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _wait_gone(pids: Collection[int], timeout_s: float, poll_s: float = 0.05) -> set[int]:
    """Poll until every pid has exited or `timeout_s` passed; the pids still alive."""
    deadline = time.monotonic() + timeout_s
    alive = {p for p in pids if process_alive(p)}
    while alive and time.monotonic() < deadline:
        time.sleep(poll_s)
        alive = {p for p in alive if process_alive(p)}
    return alive


def kill_orphans(
    owner_alive: Callable[[int], bool] = process_alive,
    owners: Collection[int] | None = None,
    grace_s: float = 5.0,
    errors: list[str] | None = None,
) -> list[int]:
    """End every orphan (`orphan_processes`): SIGTERM, up to `grace_s` to exit, then SIGKILL.

    The grace matters: loky's resource trackers ignore SIGTERM but exit by themselves, unlinking
    the semaphores they track, once the workers holding their pipe are gone; a SIGKILL would leak
    those semaphores in /dev/shm. Returns the pids that were signalled and have exited. A process
    that survives SIGKILL (uninterruptible sleep) is reported in `errors`, or raised without it.
    """
    found = _orphans(owner_alive, owners)
    termed = [pid for pid, owner in found.items() if _signal(pid, owner, signal.SIGTERM)]
    survivors = _wait_gone(termed, grace_s)
    killed = [pid for pid in survivors if _signal(pid, found[pid], signal.SIGKILL)]
    stuck = _wait_gone(killed, 2.0)
    if stuck:
        message = f"orphan processes {sorted(stuck)} survived SIGKILL"
        if errors is None:
            raise RuntimeError(message)
        errors.append(message)
    gone = sorted(set(termed) - stuck)
    if gone:
        log.warning("killed orphan processes %s (their owner died)", gone)
    return gone


# --- MLflow runs -------------------------------------------------------------------------------


def _this_host(host: str | None) -> str:
    return host if host is not None else socket.gethostname()


def run_pid(run, host: str) -> int | None:
    """The pid a run's tags say executes it, if it ran on `host`; None when we cannot tell.

    Raises ValueError for a pid tag on this host that is not a positive integer.
    """
    tags = run.data.tags
    if tags.get(HOST_TAG) != host or PID_TAG not in tags:
        return None
    raw = tags[PID_TAG]
    try:
        pid = int(raw)
    except ValueError:
        pid = 0
    if pid <= 0:
        raise ValueError(f"run {run.info.run_id}: tag {PID_TAG}={raw!r} is not a pid")
    return pid


def run_alive(run, host: str | None = None, alive: Callable[[int], bool] = process_alive) -> bool:
    """Whether an MLflow run may still be working: RUNNING, and not known to be dead on `host`."""
    if run.info.status != RUN_RUNNING:
        return False
    pid = run_pid(run, _this_host(host))
    return pid is None or alive(pid)


def _all_pages(search: Callable[..., Any]) -> Iterator[Any]:
    token = None
    while True:
        page = search(page_token=token)
        yield from page
        token = page.token
        if not token:
            return


def _guard(errors: list[str] | None, what: str) -> contextlib.AbstractContextManager:
    """Collect an item's exception into `errors` (and go on), or let it raise when there is none."""
    if errors is None:
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def collect():
        try:
            yield
        except Exception as e:  # one bad item must not stop the sweep
            errors.append(f"{what}: {type(e).__name__}: {e}")

    return collect()


def fail_dead_runs(
    client,
    experiment_ids: list[str],
    host: str | None = None,
    alive: Callable[[int], bool] = process_alive,
    errors: list[str] | None = None,
) -> list[str]:
    """Mark FAILED every RUNNING run of `experiment_ids` whose process on `host` has died.

    `host` defaults to this machine. Runs tagged with another host, or not tagged, are left alone:
    their process may be alive where we cannot look. Deleted runs are not searched (MLflow refuses
    to change them). Returns the ids of the runs failed.
    """
    failed: list = []
    _fail_dead_runs(client, experiment_ids, _this_host(host), alive, errors, failed)
    return [run.info.run_id for run in failed]


def _fail_dead_runs(client, experiment_ids, host, alive, errors, failed: list) -> None:
    """`fail_dead_runs`, appending each failed `Run` (with its tags) to `failed` as it goes."""
    runs = _all_pages(
        lambda page_token: client.search_runs(
            experiment_ids, filter_string=RUNNING_FILTER, page_token=page_token
        )
    )
    for run in runs:
        run_id = run.info.run_id
        with _guard(errors, f"run {run_id}"):
            pid = run_pid(run, host)
            if pid is None or alive(pid):
                continue
            # look again just before acting: a step that resumed the run since the search has
            # re-tagged it with its own (live) pid, or the run has ended on its own
            run = client.get_run(run_id)
            pid = run_pid(run, host)
            if run.info.status != RUN_RUNNING or pid is None or alive(pid):
                continue
            client.set_tag(
                run_id,
                FAILED_REASON_TAG,
                f"found RUNNING after its process {pid} on {host} had died "
                f"(failed by the recovery sweep at {time.strftime('%Y-%m-%dT%H:%M:%S%z')})",
            )
            client.set_terminated(run_id, status=RUN_FAILED)
            failed.append(run)
            log.warning("failed MLflow run %s: its process %s on %s had died", run_id, pid, host)


# --- model versions ----------------------------------------------------------------------------


def _version_verdict(client, version, alive_run: Callable[[Any], bool]) -> str | None:
    """Why a pending version can never be finished, or None while its run may still finish it."""
    from mlflow.exceptions import MlflowException

    if not version.run_id:
        return None  # no run to judge by: leave it
    try:
        run = client.get_run(version.run_id)
    except MlflowException as e:
        if e.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        return f"its MLflow run {version.run_id} no longer exists"
    if run.info.status != RUN_RUNNING:
        return f"its MLflow run {version.run_id} ended {run.info.status} while it was pending"
    if not alive_run(run):
        pid = run.data.tags.get(PID_TAG)
        return f"its MLflow run {version.run_id} is RUNNING but its process {pid} has died"
    return None


def abandon_orphan_versions(
    client,
    name: str,
    host: str | None = None,
    alive: Callable[[int], bool] = process_alive,
    alive_run: Callable[[Any], bool] | None = None,
    errors: list[str] | None = None,
) -> list[str]:
    """Tag `mlassets.status=abandoned` every `pending` version of `name` that nobody will finish.

    A pending version is abandoned when its MLflow run is no longer RUNNING (the registration step
    keeps it RUNNING while it works) or when `alive_run(run)` says its process is dead (default:
    `run_alive` with `host` and `alive`). The version is kept, with `mlassets.abandoned_reason`, so
    the evidence stays; nothing promotes a version that is not `registered`. An alias on such a
    version should never exist; it is left in place and logged (`aliases_on` finds it).
    Returns the versions abandoned, as strings.
    """
    host = _this_host(host)
    if alive_run is None:

        def alive_run(run):
            return run_alive(run, host, alive)

    versions = _all_pages(
        lambda page_token: client.search_model_versions(f"name='{name}'", page_token=page_token)
    )
    abandoned = []
    for version in versions:
        if version.tags.get(STATUS_TAG) != PENDING:
            continue
        with _guard(errors, f"model {name} version {version.version}"):
            reason = _version_verdict(client, version, alive_run)
            if reason is None:
                continue
            # the reason first: a version tagged abandoned always says why
            client.set_model_version_tag(name, version.version, ABANDONED_REASON_TAG, reason)
            client.set_model_version_tag(name, version.version, STATUS_TAG, ABANDONED)
            abandoned.append(str(version.version))
    if abandoned:
        log.warning("abandoned model %s versions %s (pending, their run is over)", name, abandoned)
        on = aliases_on(client, name, abandoned)
        if on:
            log.error("aliases %s of model %s point at abandoned versions; left in place", on, name)
    return abandoned


def aliases_on(client, name: str, versions: Collection[str]) -> dict[str, str]:
    """The aliases of model `name` that point at one of `versions` (alias -> version)."""
    # search_model_versions leaves `aliases` empty on a SQLite store; the registered model has them
    aliases = client.get_registered_model(name).aliases or {}
    wanted = {str(v) for v in versions}
    return {alias: str(v) for alias, v in aliases.items() if str(v) in wanted}


# --- the sweep ---------------------------------------------------------------------------------


def sweep(
    client,
    experiment_ids: list[str],
    model_name: str,
    host: str | None = None,
    alive: Callable[[int], bool] = process_alive,
    owners: Collection[int] | None = None,
) -> dict[str, Any]:
    """Recover from killed runs on `host` (default: this machine); never raises for one bad item.

    In order: fail RUNNING runs whose process died (so their versions are judged next), abandon
    pending versions that nobody will finish, end orphan processes (of any dead owner, or only of
    `owners`). Returns what it did, for a log line and for the caller to finish the job:
    `failed_runs` (MLflow run ids), `dagster_runs` (their `dagster_run_id` tags: the Dagster runs
    to report failed), `abandoned_versions`, `aliases_on_abandoned` (alias -> version; should stay
    empty), `killed_processes`, `errors` (one message per item or step that failed).
    """
    host = _this_host(host)
    errors: list[str] = []
    failed: list = []
    report: dict[str, Any] = {
        "host": host,
        "failed_runs": [],
        "dagster_runs": [],
        "abandoned_versions": [],
        "aliases_on_abandoned": {},
        "killed_processes": [],
        "errors": errors,
    }
    with _guard(errors, "failing dead runs"):
        _fail_dead_runs(client, experiment_ids, host, alive, errors, failed)
    report["failed_runs"] = [run.info.run_id for run in failed]
    report["dagster_runs"] = [
        run.data.tags[DAGSTER_RUN_TAG] for run in failed if run.data.tags.get(DAGSTER_RUN_TAG)
    ]
    with _guard(errors, f"abandoning versions of {model_name}"):
        report["abandoned_versions"] = abandon_orphan_versions(
            client, model_name, host, alive, errors=errors
        )
        if report["abandoned_versions"]:
            report["aliases_on_abandoned"] = aliases_on(
                client, model_name, report["abandoned_versions"]
            )
    with _guard(errors, "killing orphan processes"):
        report["killed_processes"] = kill_orphans(alive, owners, errors=errors)
    return report
