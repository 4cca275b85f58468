"""A per-model lease: one holder at a time moves a registered model's aliases.

MLflow has no compare-and-set: a registered-model tag is last-writer-wins, and a promotion or a
rollback reads the aliases, decides and moves them several round trips later. So every alias move
(staging, promotion, rollback, and the restore after a failure) happens while holding the lease,
the tag `mlassets.lease` on the registered model, a JSON record:

    {"holder": "<Dagster run id>", "token": "<uuid4 hex, one per acquisition>",
     "action": "promote", "acquired": "<ISO 8601 UTC>", "expires": "<ISO 8601 UTC>",
     "took_over": "<run id of an expired holder>" (only on a takeover)}

Taking it is Fischer's timed mutual exclusion over that tag: read it; when it is absent, expired
or this run's own, write our record; wait `settle_s`; read it back. The read-back decides: whoever
wrote last holds it, and everyone who wrote before sees that and waits. It is sound as long as
each contender's write lands within `settle_s / 2` of its read (a contender whose write took
longer does not claim, it tries again) and the hosts' clocks agree to within `RENEW_MARGIN_S`.
The holder reads the record again before each move (`Lease.verify`) and stops if it is no longer
its own. A holder that dies keeps the lease until it expires (`ttl_s`); then the next one takes
it over and says so. Waiting is bounded (`wait_s`): then `LeaseBusy` names the holder and expiry.
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from mlassets.ml.registry import RegistryError

LEASE_TAG = "mlassets.lease"
WAIT_S = 30.0  # how long a mover waits for a held lease before LeaseBusy (Dagster may retry)
TTL_S = 120.0  # a lease not released by then (its holder died) may be taken over
SETTLE_S = 0.5  # between writing our record and reading it back
POLL_S = 0.5  # between two looks at a held lease (plus up to half of it at random)
RENEW_MARGIN_S = 10.0  # a holder renews before a move when less than this is left

Log = Callable[[str], None]
_logger = logging.getLogger(__name__)


class LeaseBusy(RegistryError, TimeoutError):
    """Another run held the lease for the whole wait. A `TimeoutError`: passing, so the Dagster
    shell's retry policy may try again (`services.is_transient`)."""


class LeaseLost(RegistryError):
    """The lease this run held is someone else's now (it expired and was taken over)."""


def default_holder() -> str:
    """Who holds the lease when the caller names no run: this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat(timespec="milliseconds")


def _seconds(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


@dataclass(frozen=True)
class LeaseRecord:
    """What the tag holds (see the module docstring)."""

    holder: str
    token: str
    action: str
    acquired: str
    expires: str
    took_over: str | None = None

    def remaining(self, now: float) -> float:
        return _seconds(self.expires) - now

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if v is not None})

    @classmethod
    def parse(cls, text: str | None) -> LeaseRecord | None:
        """The record, or None for no tag; a tag that is not a record reads as expired, so a
        garbled value can be taken over (and the takeover logged) instead of blocking forever."""
        if not text:
            return None
        try:
            data = json.loads(text)
            record = cls(
                **{k: str(data[k]) for k in ("holder", "token", "action", "acquired")},
                expires=str(data["expires"]),
                took_over=data.get("took_over"),
            )
            record.remaining(0.0)  # a parsable expiry
            return record
        except (ValueError, TypeError, KeyError):
            return cls("unreadable", "", "?", _iso(0), _iso(0))


def read(client, name: str) -> LeaseRecord | None:
    """The lease record on registered model `name` (None: free)."""
    return LeaseRecord.parse(client.get_registered_model(name).tags.get(LEASE_TAG))


class Lease:
    """A held lease: check it before each move (`verify`), give it back with `release`."""

    def __init__(
        self, client, name: str, record: LeaseRecord, ttl_s: float, settle_s: float, log: Log
    ):
        self.client, self.name, self.record = client, name, record
        self.ttl_s, self.settle_s, self.log = ttl_s, settle_s, log

    @property
    def holder(self) -> str:
        return self.record.holder

    def verify(self) -> None:
        """Raise LeaseLost unless the record is still ours; renew it when close to expiry."""
        found = read(self.client, self.name)
        if found is None or found.token != self.record.token:
            who = f"run {found.holder} (since {found.acquired})" if found else "nobody"
            raise LeaseLost(
                f"the lease on {self.name} taken by {self.holder} for {self.record.action} is "
                f"held by {who} now; stopped before moving an alias"
            )
        now = time.time()
        if found.remaining(now) < RENEW_MARGIN_S:
            renewed = LeaseRecord(**{**asdict(self.record), "expires": _iso(now + self.ttl_s)})
            self.client.set_registered_model_tag(self.name, LEASE_TAG, renewed.to_json())
            time.sleep(self.settle_s)
            back = read(self.client, self.name)
            if back is None or back.token != renewed.token:
                raise LeaseLost(
                    f"the lease on {self.name} was taken over while {self.holder} "
                    "renewed it; stopped before moving an alias"
                )
            self.record = renewed

    def release(self) -> None:
        """Delete the record if it is still ours (and not about to expire: a contender may be
        taking it over, and deleting its record would free the lease twice)."""
        found = read(self.client, self.name)
        if found is None or found.token != self.record.token:
            self.log(
                f"lease on {self.name}: {self.holder} no longer held it at release "
                f"(held by {found.holder if found else 'nobody'})"
            )
            return
        if found.remaining(time.time()) > RENEW_MARGIN_S:
            self.client.delete_registered_model_tag(self.name, LEASE_TAG)


def acquire(
    client,
    name: str,
    holder: str | None = None,
    action: str = "move aliases",
    *,
    wait_s: float = WAIT_S,
    ttl_s: float = TTL_S,
    settle_s: float = SETTLE_S,
    log: Log | None = None,
) -> Lease:
    """Take the lease on registered model `name` for `holder` (a run id), waiting at most
    `wait_s` while another live holder has it; LeaseBusy then, naming that holder and expiry.
    An expired record (or one of `holder`'s own, left by an earlier attempt) is taken over and
    the takeover logged with `log` (default: this module's logger, at WARNING)."""
    from mlassets.ml.faults import gate

    holder = holder or default_holder()
    log = log or _logger.warning
    gate("lease")
    token = uuid.uuid4().hex
    deadline = time.monotonic() + wait_s
    waited_for: str | None = None
    tried = False  # one look at least, whatever `wait_s`
    while True:
        started = time.monotonic()
        current = read(client, name)
        now = time.time()
        theirs = current is not None and current.token != token
        if tried and started >= deadline:
            raise LeaseBusy(
                f"{holder} could not take the lease on model {name} for {action} within "
                f"{wait_s:.0f} s: "
                + (
                    f"run {current.holder} holds it ({current.action}, since "
                    f"{current.acquired}) until {current.expires}"
                    if theirs
                    else f"each write of the lease record took over {settle_s / 2:.2f} s"
                )
            )
        tried = True
        if theirs and current.holder != holder and current.remaining(now) > 0:
            if waited_for != current.token:
                log(
                    f"lease on {name}: {holder} waits for run {current.holder} "
                    f"({current.action}), which holds it until {current.expires}"
                )
                waited_for = current.token
            pause = POLL_S * (1 + random.random() / 2)
            time.sleep(max(0.0, min(pause, deadline - time.monotonic())))
            continue
        took_over = current if theirs else None
        mine = LeaseRecord(
            holder,
            token,
            action,
            _iso(now),
            _iso(now + ttl_s),
            took_over=took_over.holder if took_over else None,
        )
        try:
            client.set_registered_model_tag(name, LEASE_TAG, mine.to_json())
        except Exception:
            # MLflow's SQL store upserts a tag by select-then-insert: two first writes of the
            # record collide on its key and one fails (IntegrityError, as BAD_REQUEST). If a
            # rival's record is there now, it won that write: wait for it like any holder.
            rival = read(client, name)
            if rival is None or rival.token == token:
                raise
            continue
        if time.monotonic() - started > settle_s / 2:
            continue  # our write may have landed after a rival read-back: not a claim; again
        time.sleep(settle_s)
        back = read(client, name)
        if back is not None and back.token == token:
            if took_over is not None:
                log(
                    f"lease on {name}: {holder} took over the lease of run {took_over.holder} "
                    f"({took_over.action}, since {took_over.acquired}), "
                    + (
                        "its own earlier attempt's"
                        if took_over.holder == holder
                        else f"expired at {took_over.expires}"
                    )
                )
            return Lease(client, name, mine, ttl_s, settle_s, log)
        # another write landed after ours: it holds the lease; wait for it like any holder


@contextmanager
def held(
    client,
    name: str,
    holder: str | None = None,
    action: str = "move aliases",
    log: Log | None = None,
    **timing: float,
) -> Iterator[Lease]:
    """`acquire`, then release in `finally` whatever the block raised."""
    lease = acquire(client, name, holder, action, log=log, **timing)
    try:
        yield lease
    finally:
        try:
            lease.release()
        except Exception as e:  # the moves are done or undone; the record expires on its own
            lease.log(
                f"lease on {name}: {lease.holder} could not release it ({type(e).__name__}: "
                f"{e}); it expires at {lease.record.expires}"
            )
