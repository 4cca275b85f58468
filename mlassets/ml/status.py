"""The status vocabulary: the one home of every status string mlassets writes or looks for.

A model version's lifecycle lives in its tag `mlassets.status` (see `registry`): `register`
creates it `pending`, `mark_registered` makes it `registered`, `abandon` (or the recovery sweep)
marks a version that must never serve `abandoned`, `rollback` marks the version it leaves
`rolled_back`. An MLflow run is `RUNNING` until it ends `FINISHED` or `FAILED`.

These strings are stored in the MLflow database, so a value here may be added but never renamed:
a renamed value would make every stored version or run unreadable to the code that judges it.
Modules import them from here; none spells them again (`test_status.py` checks).
"""

from __future__ import annotations

# --- model versions: the tag and its values ----------------------------------------------------

STATUS_TAG = "mlassets.status"
PENDING = "pending"
REGISTERED = "registered"
ABANDONED = "abandoned"
ROLLED_BACK = "rolled_back"
# why a version was abandoned, and why the sweep failed a run (each set before the status itself)
ABANDONED_REASON_TAG = "mlassets.abandoned_reason"
FAILED_REASON_TAG = "mlassets.failed_reason"

# --- MLflow runs: the statuses mlassets sets or searches for (MLflow's own names) --------------

RUN_RUNNING = "RUNNING"
RUN_FINISHED = "FINISHED"
RUN_FAILED = "FAILED"
RUNNING_FILTER = f"attributes.status = '{RUN_RUNNING}'"
