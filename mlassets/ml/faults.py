"""Failpoints: how the crash-safety and retry tests make a real run fail at an exact point.

`MLASSETS_FAILPOINT=<name>` makes the process SIGKILL itself when it reaches `failpoint(name)`,
the way FoundationDB's and TiKV's failpoints let a test crash a real process between two writes
instead of racing a signal against it. `MLASSETS_TRANSIENT_FAULT=<name>[,<name>...]` makes
`transient_fault(name)` raise, once, the error a tracking store raises while it is briefly
unavailable, so a test sees a step's retry policy at work. `MLASSETS_GATE=<name>:<folder>` holds
a process at `gate(name)` until the test opens the gate, so that several real processes reach one
point (their lease attempts) together. All are off unless set; each costs one lookup.
"""

from __future__ import annotations

import os
import signal

ENV = "MLASSETS_FAILPOINT"
TRANSIENT_ENV = "MLASSETS_TRANSIENT_FAULT"


def failpoint(name: str) -> None:
    """Die here, as a power cut or an OOM kill would, if `$MLASSETS_FAILPOINT` names `name`."""
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def transient_fault(name: str) -> None:
    """Raise MLflow's TEMPORARILY_UNAVAILABLE here, the first time only, if
    `$MLASSETS_TRANSIENT_FAULT` names `name`.

    "First time" holds across a step's retries and across processes: the fault fires for the
    caller that creates its marker file (`<MLASSETS_HOME>/faults/<name>.fired`, created
    exclusively), so the retry that follows succeeds. Delete the marker to arm it again.
    """
    names = os.environ.get(TRANSIENT_ENV)
    if not names or name not in {n.strip() for n in names.split(",")}:
        return
    from mlassets import settings

    marker = settings.home() / "faults" / f"{name}.fired"
    marker.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(marker, "x") as f:
            f.write(f"pid {os.getpid()}\n")
    except FileExistsError:
        return
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import TEMPORARILY_UNAVAILABLE

    raise MlflowException(
        f"injected transient fault at {name} ({TRANSIENT_ENV}): tracking store briefly unavailable",
        error_code=TEMPORARILY_UNAVAILABLE,
    )


GATE_ENV = "MLASSETS_GATE"
GATE_TIMEOUT_S = 300.0
_passed: set[str] = set()


def gate(name: str) -> None:
    """Wait here, once per process, until a test opens the gate, if `$MLASSETS_GATE` is
    `<name>:<folder>`: write `<folder>/<name>.<pid>.waiting`, then wait for `<folder>/<name>.open`
    (at most `GATE_TIMEOUT_S`, then carry on). A test holds several processes at one point
    (their lease attempts) and lets them all go at once: a real race, on purpose."""
    spec = os.environ.get(GATE_ENV)
    if not spec or name in _passed:
        return
    gated, _, folder = spec.partition(":")
    if gated != name or not folder:
        return
    import time
    from pathlib import Path

    _passed.add(name)
    where = Path(folder)
    (where / f"{name}.{os.getpid()}.waiting").touch()
    deadline = time.monotonic() + GATE_TIMEOUT_S
    while not (where / f"{name}.open").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
