"""Failpoints: how the crash-safety tests kill a real run at an exact point.

`MLASSETS_FAILPOINT=<name>` makes the process SIGKILL itself when it reaches `failpoint(name)`,
the way FoundationDB's and TiKV's failpoints let a test crash a real process between two writes
instead of racing a signal against it. Off unless the variable is set; costs one lookup.
"""

from __future__ import annotations

import os
import signal

ENV = "MLASSETS_FAILPOINT"


def failpoint(name: str) -> None:
    """Die here, as a power cut or an OOM kill would, if `$MLASSETS_FAILPOINT` names `name`."""
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
