"""The per-model lease (`mlassets.ml.lease`) on a real MLflow SQLite store (no mocks): its record,
the bounded wait, the takeover of an expired lease, a lost lease, and one holder at a time when
threads race for it."""

import json
import threading
import time
import uuid
from datetime import datetime

import pytest

from mlassets.ml.lease import (
    LEASE_TAG,
    LeaseBusy,
    LeaseLost,
    LeaseRecord,
    acquire,
    held,
    read,
)
from mlassets_tests.conftest import empty_mlflow_store

pytestmark = pytest.mark.integration

FAST = {"settle_s": 0.1}  # a local SQLite write takes milliseconds: a short settle will do


@pytest.fixture(scope="module")
def uri(tmp_path_factory) -> str:
    return empty_mlflow_store(tmp_path_factory.mktemp("lease") / "mlflow.db")


@pytest.fixture
def client(uri):
    from mlflow import MlflowClient

    return MlflowClient(uri, uri)


@pytest.fixture
def name(client) -> str:
    model = f"m_{uuid.uuid4().hex[:8]}"
    client.create_registered_model(model)
    return model


def raw_tag(client, name: str) -> dict | None:
    text = client.get_registered_model(name).tags.get(LEASE_TAG)
    return json.loads(text) if text else None


def test_the_record_names_holder_action_and_expiry_and_release_removes_it(client, name):
    lease = acquire(client, name, "run-a", "promote version 2", ttl_s=60, **FAST)
    record = raw_tag(client, name)
    assert set(record) == {"holder", "token", "action", "acquired", "expires"}
    assert record["holder"] == "run-a" and record["action"] == "promote version 2"
    assert record["token"] == lease.record.token
    held_for = datetime.fromisoformat(record["expires"]) - datetime.fromisoformat(
        record["acquired"]
    )
    assert held_for.total_seconds() == pytest.approx(60, abs=0.01)
    lease.verify()  # still ours
    lease.release()
    assert raw_tag(client, name) is None


def test_a_held_lease_makes_another_holder_wait_then_fail_naming_holder_and_expiry(client, name):
    from mlassets.ml.registry import RegistryError
    from mlassets.ml.services import is_transient

    first = acquire(client, name, "run-a", "rollback", ttl_s=60, **FAST)
    waits: list[str] = []
    started = time.monotonic()
    with pytest.raises(LeaseBusy) as busy:
        acquire(client, name, "run-b", "promote version 3", wait_s=1.0, log=waits.append, **FAST)
    waited = time.monotonic() - started
    assert 1.0 <= waited < 5.0
    message = str(busy.value)
    assert "run-b could not take the lease on model" in message and "within 1 s" in message
    assert "run run-a holds it (rollback, since" in message
    assert f"until {first.record.expires}" in message
    # a refusal of the registry, and passing: the Dagster shell's retry policy may try again
    assert isinstance(busy.value, RegistryError) and is_transient(busy.value)
    assert waits == [
        f"lease on {name}: run-b waits for run run-a (rollback), which holds it until "
        f"{first.record.expires}"
    ]
    assert read(client, name).token == first.record.token  # the waiter wrote nothing
    first.release()
    with held(client, name, "run-b", **FAST) as second:  # free again: taken at once
        assert read(client, name).holder == "run-b" == second.holder
    assert read(client, name) is None


def test_an_expired_lease_is_taken_over_and_the_takeover_logged(client, name):
    dead = LeaseRecord(
        "run-dead",
        "t0",
        "promote version 2",
        "2026-01-01T00:00:00+00:00",
        "2026-01-01T00:02:00+00:00",
    )
    client.set_registered_model_tag(name, LEASE_TAG, dead.to_json())
    said: list[str] = []
    lease = acquire(client, name, "run-new", "rollback", wait_s=0, log=said.append, **FAST)
    assert raw_tag(client, name)["took_over"] == "run-dead"
    assert said == [
        f"lease on {name}: run-new took over the lease of run run-dead (promote version 2, "
        "since 2026-01-01T00:00:00+00:00), expired at 2026-01-01T00:02:00+00:00"
    ]
    lease.release()


def test_a_garbled_record_reads_as_expired_and_is_taken_over(client, name):
    client.set_registered_model_tag(name, LEASE_TAG, "not a lease")
    said: list[str] = []
    with held(client, name, "run-new", log=said.append, wait_s=0, **FAST):
        assert raw_tag(client, name)["took_over"] == "unreadable"
    assert len(said) == 1 and "took over the lease of run unreadable" in said[0]


def test_a_holder_that_lost_its_lease_stops_and_leaves_the_new_record(client, name):
    lease = acquire(client, name, "run-a", "rollback", **FAST)
    other = LeaseRecord(
        "run-b", "t1", "promote version 4", "2026-01-01T00:00:00+00:00", "2999-01-01T00:00:00+00:00"
    )
    client.set_registered_model_tag(name, LEASE_TAG, other.to_json())
    with pytest.raises(LeaseLost, match=r"held by run run-b \(since 2026-01-01"):
        lease.verify()
    said: list[str] = []
    lease.log = said.append
    lease.release()
    assert read(client, name) == other  # not deleted: it is not ours
    assert said == [f"lease on {name}: run-a no longer held it at release (held by run-b)"]


def test_a_lease_close_to_expiry_is_renewed_before_a_move(client, name):
    lease = acquire(client, name, "run-a", "rollback", ttl_s=5, **FAST)  # under RENEW_MARGIN_S
    before = lease.record.expires
    lease.verify()
    assert lease.record.expires > before
    assert read(client, name) == lease.record
    lease.release()


def test_threads_racing_for_the_lease_hold_it_one_at_a_time(client, name, uri):
    """Four holders, three rounds each, released at one barrier: every acquisition happens, and
    no two holds overlap (each holder checks its lease on entry and on exit). Without the settle
    between writing the record and reading it back (write, read back at once), two holders
    overlapped in each of three tries: the read-back alone does not decide."""
    from mlflow import MlflowClient

    holders, rounds = 4, 3
    barrier = threading.Barrier(holders)
    guard = threading.Lock()
    inside: list[str] = []
    holds: list[tuple[float, float, str]] = []
    errors: list[BaseException] = []
    said: list[str] = []

    def contend(i: int) -> None:
        own = MlflowClient(uri, uri)
        try:
            barrier.wait(timeout=30)
            for _ in range(rounds):
                with held(own, name, f"run-{i}", wait_s=60, log=said.append, **FAST) as lease:
                    start = time.monotonic()
                    with guard:
                        inside.append(lease.holder)
                        assert len(inside) == 1, f"two holders at once: {inside}"
                    lease.verify()
                    time.sleep(0.05)  # a move's worth of holding
                    lease.verify()
                    with guard:
                        inside.remove(lease.holder)
                    holds.append((start, time.monotonic(), lease.holder))
        except BaseException as e:  # reported below, with the others
            errors.append(e)

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(holders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a holder never finished"
    assert errors == []
    assert len(holds) == holders * rounds
    assert any(" waits for run run-" in s for s in said), said  # they did contend
    assert not any("took over" in s for s in said), said  # and nobody's lease expired
    ordered = sorted(holds)
    for (_, end, a), (start, _, b) in zip(ordered, ordered[1:], strict=False):
        assert end <= start, f"{a} and {b} held the lease at once"
    assert read(client, name) is None
