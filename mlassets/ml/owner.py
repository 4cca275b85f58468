"""Who owns a run: a process named so that no other process can be taken for it (issue 24).

A pid names a process only inside one pid namespace and only until the pid is reused; a hostname
does not name a machine (containers share one, each with its own pid namespace). So an owner is
recorded as

    host=<hostname> pid=<pid> start_ticks=<n> pid_ns=<inode> boot_id=<uuid> time_ns=<inode>

`pid` as the process sees itself (`os.getpid()`), `start_ticks` field 22 of `/proc/<pid>/stat`
(clock ticks after boot), `pid_ns` the inode of `/proc/<pid>/ns/pid`, `boot_id` the kernel's
`/proc/sys/kernel/random/boot_id`, `time_ns` the inode of `/proc/<pid>/ns/time` (absent before
Linux 5.6): the kernel shifts every start time it shows by the *reader's* time-namespace boot
offset, so two start times compare only when read in the same time namespace. The same string is
the MLflow run tag `mlassets.owner` and the variable `MLASSETS_OWNER` a step exports for the
processes it starts; the run also keeps the plain tags `mlassets.host` and `mlassets.pid` for
people and for older readers.

`judge` calls an owner dead only when it can prove it: the judging process has the owner's host,
boot id, pid namespace and time namespace, its `/proc` shows that pid namespace, and the pid is
gone, a zombie, or a process with another start time (the pid was reused). Everything else is
`UNKNOWN` with the reason why, and callers leave it alone: another host, boot or namespace (its
process may live where we cannot look; a reused namespace inode is safe, since a namespace that
was freed has no live process), an unreadable `/proc`, and a record without the new fields.

Records written before issue 24 (`mlassets.host` and `mlassets.pid` only, or `MLASSETS_OWNER_PID`
in a worker's environment) name no namespace, so they are never judged dead: such a run stays
RUNNING and its version `pending` until someone fails them by hand (the sweep reports them), and
such a worker is never killed (loky's idle workers leave by themselves after 300 s). A run whose
plain tags disagree with its `mlassets.owner` was re-tagged by an older step process since: it is
judged as an old record too.
"""

from __future__ import annotations

import enum
import os
import socket
from dataclasses import dataclass
from typing import NamedTuple

OWNER_ENV = "MLASSETS_OWNER"
LEGACY_OWNER_ENV = "MLASSETS_OWNER_PID"  # before issue 24: a bare pid; read by nobody now
OWNER_TAG = "mlassets.owner"
HOST_TAG = "mlassets.host"
PID_TAG = "mlassets.pid"

PROC = "/proc"
BOOT_ID = f"{PROC}/sys/kernel/random/boot_id"
_FIELDS = ("host", "pid", "start_ticks", "pid_ns", "boot_id", "time_ns")


class ProcStat(NamedTuple):
    """The fields of `/proc/<pid>/stat` the sweep uses."""

    state: str
    ppid: int
    start_ticks: int


def proc_stat(pid: int | str) -> ProcStat | None:
    """`pid`'s (or "self"'s) state, parent and start time, or None when /proc cannot tell."""
    try:
        with open(f"{PROC}/{pid}/stat", "rb") as f:
            data = f.read().decode(errors="replace")
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may itself hold spaces or ')'; the state
    # is field 3, so field n is at index n - 3 of what follows it
    fields = data.rpartition(")")[2].split()
    try:
        return ProcStat(fields[0], int(fields[1]), int(fields[19]))
    except (IndexError, ValueError):
        return None


@dataclass(frozen=True)
class Identity:
    """A process as it was recorded; the fields after `pid` are None in an old or partial record
    (`time_ns` also where the kernel has no time namespaces)."""

    host: str
    pid: int
    start_ticks: int | None = None
    pid_ns: int | None = None
    boot_id: str | None = None
    time_ns: int | None = None

    @property
    def complete(self) -> bool:
        return None not in (self.start_ticks, self.pid_ns, self.boot_id)

    def __str__(self) -> str:
        return " ".join(f"{k}={v}" for k in _FIELDS if (v := getattr(self, k)) is not None)

    @classmethod
    def parse(cls, text: str) -> Identity:
        """The inverse of `str`; unknown keys are ignored (a newer writer may add some).

        Raises ValueError for a record without host or pid or with a field that is not a number.
        """
        values = dict(part.partition("=")[::2] for part in text.split())
        if not values.get("host") or "pid" not in values:
            raise ValueError(f"owner record {text!r} has no host or pid")
        return cls(
            values["host"],
            _pid(values["pid"], f"owner record {text!r}"),
            *(_number(values.get(k), k, text) for k in ("start_ticks", "pid_ns")),
            values.get("boot_id") or None,
            _number(values.get("time_ns"), "time_ns", text),
        )

    @classmethod
    def from_tags(cls, tags: dict[str, str]) -> Identity | None:
        """The owner recorded in an MLflow run's tags; None when the run names no owner.

        An old record (plain tags only), or one whose plain tags say another host or pid than
        `mlassets.owner` (re-tagged by an older step process), gives a record without its last
        fields, which `judge` never calls dead. Raises ValueError for a malformed tag.
        """
        if HOST_TAG not in tags or PID_TAG not in tags:
            return None
        plain = cls(tags[HOST_TAG], _pid(tags[PID_TAG], f"tag {PID_TAG}"))
        if OWNER_TAG not in tags:
            return plain
        full = cls.parse(tags[OWNER_TAG])
        return full if (full.host, full.pid) == (plain.host, plain.pid) else plain

    def tags(self) -> dict[str, str]:
        """The MLflow tags that record this owner (see `from_tags`)."""
        return {HOST_TAG: self.host, PID_TAG: str(self.pid), OWNER_TAG: str(self)}


def _pid(raw: str, where: str) -> int:
    try:
        pid = int(raw)
    except ValueError:
        pid = 0
    if pid <= 0:  # 0 and negative pids address process groups, never one process
        raise ValueError(f"{where}: {raw!r} is not a pid")
    return pid


def _number(raw: str | None, key: str, where: str) -> int | None:
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"owner record {where!r}: {key}={raw!r} is not a number") from None


def _boot_id() -> str | None:
    try:
        with open(BOOT_ID) as f:
            return f.read().strip() or None
    except OSError:
        return None


def _ns(pid: int | str, kind: str) -> int | None:
    try:
        return os.stat(f"{PROC}/{pid}/ns/{kind}").st_ino
    except OSError:
        return None


def identity_of(pid: int) -> Identity:
    """Process `pid` of this /proc, on this host (fields it cannot read are None)."""
    stat = proc_stat(pid)
    return Identity(
        socket.gethostname(),
        pid,
        stat and stat.start_ticks,
        _ns(pid, "pid"),
        _boot_id(),
        _ns(pid, "time"),
    )


def current() -> Identity:
    """This process. Read through /proc/self, which is this process whatever namespace /proc
    shows, so the record is right even where `judge` could not use /proc."""
    stat = proc_stat("self")
    return Identity(
        socket.gethostname(),
        os.getpid(),
        stat and stat.start_ticks,
        _ns("self", "pid"),
        _boot_id(),
        _ns("self", "time"),
    )


def proc_is_own() -> bool:
    """Whether /proc shows this process's pid namespace, so that /proc/<pid> is our `pid`.

    Not so after `unshare --pid --fork` without a new /proc mount: /proc still shows the parent
    namespace, where pid 1 of the new namespace has another number.
    """
    try:
        return os.readlink(f"{PROC}/self") == str(os.getpid())
    except OSError:
        return False


class State(enum.Enum):
    ALIVE = "alive"
    DEAD = "dead"  # proven: the only state on which a sweep acts
    UNKNOWN = "unknown"


class Verdict(NamedTuple):
    state: State
    reason: str

    @property
    def dead(self) -> bool:
        return self.state is State.DEAD


def judge(owner: Identity, here: Identity | None = None) -> Verdict:
    """Whether `owner` is provably dead, as seen from this process (`here`, default `current()`).

    DEAD needs an exact match (host, boot id, pid and time namespaces, /proc of that pid
    namespace) and then a pid that is gone, a zombie, or another process (another start time).
    Anything that cannot be proven is UNKNOWN, never DEAD; the reason says which check failed.
    """
    here = current() if here is None else here
    if not owner.complete:
        return Verdict(
            State.UNKNOWN,
            f"owner {owner} was recorded without boot id, pid namespace and start time (an old "
            f"record, or /proc was unreadable): it cannot be proven dead",
        )
    if not here.complete:
        return Verdict(State.UNKNOWN, "this process cannot read its own identity from /proc")
    elsewhere = None
    if owner.host != here.host:
        elsewhere = f"on host {owner.host!r}, this process is on {here.host!r}"
    elif owner.boot_id != here.boot_id:
        elsewhere = f"in boot {owner.boot_id}, this machine is in boot {here.boot_id}"
    elif owner.pid_ns != here.pid_ns:
        elsewhere = f"in pid namespace {owner.pid_ns}, this process is in {here.pid_ns}"
    elif owner.time_ns != here.time_ns:  # its start time is shifted by another boot offset
        elsewhere = f"in time namespace {owner.time_ns}, this process is in {here.time_ns}"
    if elsewhere is not None:
        return Verdict(
            State.UNKNOWN,
            f"owner pid {owner.pid} was recorded {elsewhere}: it may live where this process "
            f"cannot look",
        )
    if not proc_is_own():
        return Verdict(State.UNKNOWN, f"{PROC} here shows another pid namespace than this one")
    return _judge_pid(owner)


def _judge_pid(owner: Identity) -> Verdict:
    """`judge` once the owner is known to be in this very pid namespace and boot."""
    pid = owner.pid
    stat = proc_stat(pid)
    if stat is None:
        try:
            os.kill(pid, 0)
        except (ProcessLookupError, OverflowError):  # no such process (or beyond pid_t)
            return Verdict(State.DEAD, f"process {pid} is gone")
        except OSError:  # EPERM: it exists, we may not signal it
            pass
        return Verdict(State.UNKNOWN, f"process {pid} exists but {PROC}/{pid}/stat is unreadable")
    if stat.start_ticks != owner.start_ticks:
        return Verdict(
            State.DEAD,
            f"process {pid} is gone: pid {pid} now belongs to a process started at tick "
            f"{stat.start_ticks}, the owner started at tick {owner.start_ticks}",
        )
    if stat.state in ("Z", "X", "x"):
        return Verdict(State.DEAD, f"process {pid} has exited (a zombie, not yet reaped)")
    return Verdict(State.ALIVE, f"process {pid} is alive (state {stat.state})")
