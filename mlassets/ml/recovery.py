"""Recovery after a killed run: fail its MLflow run, abandon its half-registered versions, end its
orphan processes (design invariant 6).

A SIGKILLed step process cannot clean up after itself, so someone else must: this module is that
someone, a sweep that is safe to run at any time, from any process, as often as wanted. It decides
only from what a live process leaves behind and a dead one cannot take back:

- the MLflow run's owner tags (`mlassets.owner`, beside `mlassets.host` and `mlassets.pid`): the
  identity of the process that executes the run's steps (`owner.Identity`);
- the environment variable `MLASSETS_OWNER`, the same identity, which the step process exports
  before any work so that every process it starts (joblib's loky workers, which outlive a
  SIGKILLed parent) inherits it;
- the model version tag `mlassets.status` (`pending` while the registration step works,
  `registered` once it finished) and the version's `run_id`.

It acts on an owner only when `owner.judge` proves it dead: same host, boot, pid and time
namespaces as the sweeping process, and its pid gone, a zombie or reused by a process with another
start time.
What it cannot prove (another host, boot or container's pid namespace, an unreadable /proc, a
record made before owners carried that identity) it leaves alone and says why (`left_alone`), so
a sweep never fails a live run or kills a live run's worker, even one in a container that shares
this hostname but not this pid namespace.

Linux only for the process part (`/proc`); elsewhere no owner is ever proven dead.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable, Collection, Iterator
from typing import Any

from mlassets.ml.owner import OWNER_ENV, PROC, Identity, State, Verdict, current, judge, proc_stat
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

DAGSTER_RUN_TAG = "dagster_run_id"  # the Dagster run's MLflow run (`resources.MlflowTracking`)


# --- processes ---------------------------------------------------------------------------------


def process_alive(pid: int) -> bool:
    """Whether process `pid` of this namespace exists and has not exited (a zombie has exited: it
    only awaits reaping). For a pid the sweep found or signalled itself; a recorded owner is
    judged by `owner.judge`, which also tells a reused pid from its first holder.

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
    stat = proc_stat(pid)
    return stat is None or stat.state not in ("Z", "X", "x")


def _ancestors(pid: int) -> set[int]:
    """`pid` and every process above it (never to be signalled by a sweep)."""
    seen = {pid}
    while True:
        stat = proc_stat(pid)
        if stat is None or stat.ppid <= 0 or stat.ppid in seen:
            return seen
        pid = stat.ppid
        seen.add(pid)


def _owner_of(pid: int) -> Identity | None:
    """The `MLASSETS_OWNER` a process was started with, or None (unset, unreadable, malformed).

    A process that carries only the variable of old (`MLASSETS_OWNER_PID`, a bare pid) has no
    owner here: that pid names no namespace, so it could be anybody's.
    """
    try:
        with open(f"{PROC}/{pid}/environ", "rb") as f:
            environ = f.read()
    except OSError:  # gone, or another user's process
        return None
    prefix = OWNER_ENV.encode() + b"="
    for entry in environ.split(b"\0"):
        if entry.startswith(prefix):
            try:
                return Identity.parse(entry[len(prefix) :].decode(errors="replace"))
            except ValueError:
                return None
    return None


def _pids() -> Iterator[int]:
    try:
        names = os.listdir(PROC)
    except OSError:
        return
    for name in names:
        if name.isdigit():
            yield int(name)


def _unless_proven_dead(here: Identity | None = None) -> Callable[[Identity], bool]:
    """`owner_alive` by default: alive unless `judge` proves it dead, from `here` (this process)."""
    here = current() if here is None else here
    return lambda owner: not judge(owner, here).dead


def _orphans(
    owner_alive: Callable[[Identity], bool] | None, owners: Collection[int] | None
) -> dict[int, Identity]:
    """{orphan pid: its dead owner} (see `orphan_processes`)."""
    owner_alive = _unless_proven_dead() if owner_alive is None else owner_alive
    protected = _ancestors(os.getpid())
    owners = None if owners is None else set(owners)
    verdicts: dict[Identity, bool] = {}
    found = {}
    for pid in _pids():
        if pid in protected:
            continue
        owner = _owner_of(pid)
        if owner is None or owner.pid == pid or (owners is not None and owner.pid not in owners):
            continue
        if owner not in verdicts:
            verdicts[owner] = owner_alive(owner)
        if not verdicts[owner] and process_alive(pid):
            found[pid] = owner
    return found


def orphan_processes(
    owner_alive: Callable[[Identity], bool] | None = None,
    owners: Collection[int] | None = None,
) -> list[int]:
    """Pids of live processes started (directly or not) by a step process that has died.

    A process is an orphan when its environment holds `MLASSETS_OWNER=<identity>` of another
    process and `owner_alive(identity)` is false; by default that takes `owner.judge` proving the
    owner dead, so a worker of a step in another pid namespace (a container's, visible from the
    host's /proc with its owner's pid in numbers of that namespace) is never an orphan.
    `/proc/<pid>/environ` is the environment the process was *started* with, which is why it
    works for children (loky execs its workers with `os.environ`) and why the owner, which
    exported the variable later, never matches itself. Processes forked without exec
    (multiprocessing's "fork" start method) keep their parent's original environment block and
    are not found. Processes we may not read (another user's) are skipped. `owners` limits the
    scan to those owner pids. The current process and its ancestors are never returned.
    """
    return sorted(_orphans(owner_alive, owners))


def _signal(pid: int, owner: Identity, sig: int) -> bool:
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
    owner_alive: Callable[[Identity], bool] | None = None,
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


def run_verdict(run, here: Identity | None = None) -> Verdict:
    """Whether the process that owns an MLflow run (its owner tags) is provably dead, seen from
    `here` (default: this process). A run without owner tags is UNKNOWN; an old run with plain
    tags only is UNKNOWN too (see `owner`). Raises ValueError for a malformed owner tag."""
    try:
        owner = Identity.from_tags(run.data.tags)
    except ValueError as e:
        raise ValueError(f"run {run.info.run_id}: {e}") from None
    if owner is None:
        return Verdict(State.UNKNOWN, "the run names no owner process (no mlassets.host/pid tags)")
    return judge(owner, here)


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
    here: Identity | None = None,
    errors: list[str] | None = None,
    left_alone: dict[str, str] | None = None,
) -> list[str]:
    """Mark FAILED every RUNNING run of `experiment_ids` whose owner is provably dead (`judge`).

    `here` is the sweeping process (default: this one). A run whose owner cannot be judged from
    here is left RUNNING, and `left_alone` (when given) gets its id and why. Deleted runs are not
    searched (MLflow refuses to change them). Returns the ids of the runs failed.
    """
    failed: list = []
    here = current() if here is None else here
    _fail_dead_runs(client, experiment_ids, here, errors, failed, left_alone)
    return [run.info.run_id for run in failed]


def _fail_dead_runs(client, experiment_ids, here: Identity, errors, failed: list, left_alone):
    """`fail_dead_runs`, appending each failed `Run` (with its tags) to `failed` as it goes."""
    runs = _all_pages(
        lambda page_token: client.search_runs(
            experiment_ids, filter_string=RUNNING_FILTER, page_token=page_token
        )
    )
    for run in runs:
        run_id = run.info.run_id
        with _guard(errors, f"run {run_id}"):
            verdict = run_verdict(run, here)
            if verdict.dead:
                # look again just before acting: a step that resumed the run since the search has
                # re-tagged it with its own (live) identity, or the run has ended on its own
                run = client.get_run(run_id)
                if run.info.status != RUN_RUNNING:
                    continue
                verdict = run_verdict(run, here)
            if not verdict.dead:
                if verdict.state is State.UNKNOWN and left_alone is not None:
                    left_alone[run_id] = verdict.reason
                continue
            client.set_tag(
                run_id,
                FAILED_REASON_TAG,
                f"found RUNNING after its owner had died: {verdict.reason} (failed by the "
                f"recovery sweep of process {here.pid} on {here.host} at "
                f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')})",
            )
            client.set_terminated(run_id, status=RUN_FAILED)
            failed.append(run)
            log.warning("failed MLflow run %s: %s", run_id, verdict.reason)


# --- model versions ----------------------------------------------------------------------------


def _version_verdict(client, version, here: Identity) -> str | None:
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
    verdict = run_verdict(run, here)
    if verdict.dead:
        return f"its MLflow run {version.run_id} is RUNNING but its owner died: {verdict.reason}"
    return None


def abandon_orphan_versions(
    client,
    name: str,
    here: Identity | None = None,
    errors: list[str] | None = None,
) -> list[str]:
    """Tag `mlassets.status=abandoned` every `pending` version of `name` that nobody will finish.

    A pending version is abandoned when its MLflow run is no longer RUNNING (the registration step
    keeps it RUNNING while it works) or when the run's owner is provably dead (`run_verdict` from
    `here`, default this process); an owner that cannot be judged keeps its version pending. The
    version is kept, with `mlassets.abandoned_reason`, so the evidence stays; nothing promotes a
    version that is not `registered`. An alias on such a version should never exist; it is left
    in place and logged (`aliases_on` finds it). Returns the versions abandoned, as strings.
    """
    here = current() if here is None else here
    versions = _all_pages(
        lambda page_token: client.search_model_versions(f"name='{name}'", page_token=page_token)
    )
    abandoned = []
    for version in versions:
        if version.tags.get(STATUS_TAG) != PENDING:
            continue
        with _guard(errors, f"model {name} version {version.version}"):
            reason = _version_verdict(client, version, here)
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
    here: Identity | None = None,
    owners: Collection[int] | None = None,
) -> dict[str, Any]:
    """Recover from killed runs whose owner is provably dead; never raises for one bad item.

    `here` is the sweeping process (default: this one; see `owner.judge`). In order: fail RUNNING
    runs whose owner died (so their versions are judged next), abandon pending versions that
    nobody will finish, end orphan processes (of any dead owner, or only of owner pids in
    `owners`). Returns what it did, for a log line and for the caller to finish the job:
    `failed_runs` (MLflow run ids), `dagster_runs` (their `dagster_run_id` tags: the Dagster runs
    to report failed), `abandoned_versions`, `aliases_on_abandoned` (alias -> version; should stay
    empty), `killed_processes`, `left_alone` (RUNNING run id -> why its owner could not be judged:
    another host, boot or pid namespace, or an old record), `errors` (one message per item or step
    that failed).
    """
    here = current() if here is None else here
    errors: list[str] = []
    failed: list = []
    left_alone: dict[str, str] = {}
    report: dict[str, Any] = {
        "host": here.host,
        "owner": str(here),
        "failed_runs": [],
        "dagster_runs": [],
        "abandoned_versions": [],
        "aliases_on_abandoned": {},
        "killed_processes": [],
        "left_alone": left_alone,
        "errors": errors,
    }
    with _guard(errors, "failing dead runs"):
        _fail_dead_runs(client, experiment_ids, here, errors, failed, left_alone)
    report["failed_runs"] = [run.info.run_id for run in failed]
    report["dagster_runs"] = [
        run.data.tags[DAGSTER_RUN_TAG] for run in failed if run.data.tags.get(DAGSTER_RUN_TAG)
    ]
    with _guard(errors, f"abandoning versions of {model_name}"):
        report["abandoned_versions"] = abandon_orphan_versions(
            client, model_name, here, errors=errors
        )
        if report["abandoned_versions"]:
            report["aliases_on_abandoned"] = aliases_on(
                client, model_name, report["abandoned_versions"]
            )
    with _guard(errors, "killing orphan processes"):
        report["killed_processes"] = kill_orphans(_unless_proven_dead(here), owners, errors=errors)
    return report
