"""Provenance that travels with the values: what each frame, candidate and evaluation was made from.

A decision to register or promote is taken from these records alone, never from whatever the
Dagster instance recorded last: a partial selection, a re-run, a concurrent run or a stale value
then shows up as a mismatch between what a value says it was made from and what it is given.

A frame travels as `Rows` (the frame and its record, side by side), as the candidate model travels
as a `Candidate` (the model and its record); the value store writes each record as a file of its
own beside the Parquet or the model. Never in `DataFrame.attrs`: pandas documents them as
experimental, and which operation keeps, copies or drops them is pandas' choice, not ours. The
evaluation report is a dict with a `provenance` entry.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from mlassets.ml.defaults import METRICS
from mlassets.ml.records import EvaluationReport

KEY = "provenance"
# Every gate an evaluation must have judged, and passed, before its candidate is registered.
REQUIRED_GATES = (
    *(f"{m}_gate" for m in METRICS),
    "beats_baseline",
    "beats_production",
    "fairness",
)


class ProvenanceError(RuntimeError):
    """A value was not made from what the step needs; the message says what to materialize."""


@dataclass
class Rows:
    """A frame and the record of what it was made from (see `raw_record` and the steps that
    extend it: features, split, part)."""

    frame: pd.DataFrame
    provenance: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.frame)


@dataclass
class Candidate:
    """A trained model and the record of what it was trained on.

    `provenance` holds `digest` (this candidate's identity), `trained_on` (the train rows'
    fingerprint), `split` (the fingerprints of the three parts of its split), the data's
    fingerprint and quality verdict, the spec digest, the landed batches and the runs that made it.
    """

    model: Any
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        return str(self.provenance.get("digest", "unknown"))

    def predict(self, X):
        return self.model.predict(X)


def _json_digest(value: Any) -> str:
    payload = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def calibration_digest(record: dict[str, Any] | None) -> str | None:
    """A digest of a candidate's calibration (`estimation.Calibration` as a dict), or None."""
    return _json_digest(record) if record else None


def spec_digest(spec) -> str:
    """A digest of everything in the spec that shapes data and model (not its file path, nor
    its gates: a new limit judges the same model anew, it does not make it another)."""
    return _json_digest(spec.model_dump(mode="json", exclude={"gates"}))


def model_digest(model) -> str:
    """The content digest of a fitted model: sha256 of its skops serialization.

    Computed once, when the candidate is made, and carried from then on: it is the candidate's
    identity, compared by equality, so whether two dumps of one model hash alike does not matter.
    """
    import skops.io

    return hashlib.sha256(skops.io.dumps(model)).hexdigest()[:16]


def of(rows: Rows) -> dict[str, Any]:
    """The provenance record of `rows` (a copy)."""
    if not isinstance(rows, Rows):
        raise ProvenanceError(
            f"expected rows with their provenance record, got a {type(rows).__name__}: "
            "materialize the value again with this mlassets"
        )
    return dict(rows.provenance)


def stamp(df: pd.DataFrame, record: dict[str, Any]) -> Rows:
    """`df` with `record` beside it (a JSON-safe copy: it is written as JSON)."""
    return Rows(df, json.loads(json.dumps(record, default=str)))


def raw_record(
    spec,
    data_fingerprint: str,
    rows: int,
    failed_checks: list[str],
    batches: list[dict],
    label_files: list[dict] | None = None,
    source_rows: int | None = None,
) -> dict[str, Any]:
    """What `raw_data` was made from (the landed batches and the label files joined to them
    included; its first `source_rows` rows are the source's) and whether it passed every
    blocking data-quality check."""
    return {
        "spec": spec.name,
        "spec_digest": spec_digest(spec),
        "data": data_fingerprint,
        "rows": rows,
        "quality": {"passed": not failed_checks, "failed": sorted(failed_checks)},
        "batches": batches,
        "label_files": label_files or [],
        "source_rows": rows if source_rows is None else source_rows,
    }


def require_quality(record: dict[str, Any], step: str) -> None:
    """Refuse to build on data whose blocking data-quality checks did not all pass."""
    quality = record.get("quality")
    if not quality:
        raise ProvenanceError(
            f"{step}: the input carries no data-quality verdict (made before provenance was "
            "recorded, or not by raw_data): materialize raw_data and its checks first"
        )
    if not quality.get("passed"):
        raise ProvenanceError(
            f"{step}: raw_data {record.get('data')} failed its blocking data-quality checks "
            f"{quality.get('failed')}; fix the source and materialize raw_data (its checks run "
            "with it) before anything downstream"
        )


def require_spec(record: dict[str, Any], spec, step: str, what: str) -> None:
    """Refuse a value made under another spec (or another version of this spec's file)."""
    if record.get("spec") != spec.name:
        raise ProvenanceError(
            f"{step}: {what} was made for spec {record.get('spec')!r}, not {spec.name!r}: "
            f"materialize {what} under this spec"
        )
    if record.get("spec_digest") != spec_digest(spec):
        raise ProvenanceError(
            f"{step}: the spec of {spec.name} changed since {what} was made (digest "
            f"{record.get('spec_digest')} -> {spec_digest(spec)}): re-materialize from raw_data"
        )


def require_same_split(step: str, **records: dict[str, Any]) -> dict[str, str]:
    """Refuse frames that come from different splits; return the split they share."""
    splits = {name: r.get("split") for name, r in records.items()}
    missing = [n for n, s in splits.items() if not s]
    if missing:
        raise ProvenanceError(
            f"{step}: {missing} carry no split record: materialize the splits (train_set, "
            "validation_set, test_set) first"
        )
    first = next(iter(splits.values()))
    if any(s != first for s in splits.values()):
        raise ProvenanceError(
            f"{step}: inputs come from different splits ({_short(splits)}): materialize the "
            "splits, then everything downstream, in one selection"
        )
    return first


def require_split_passed(record: dict[str, Any], step: str) -> None:
    if not (record.get("split_check") or {}).get("passed"):
        raise ProvenanceError(
            f"{step}: the split {record.get('split')} failed disjoint_and_stratified: fix the "
            "split config and materialize the splits again"
        )


def kept_production(evaluation: EvaluationReport) -> str | None:
    """Why production stays, when the only gate this evaluation failed is `beats_production` on
    a comparison that was made (the challenger scored worse than production on the same rows):
    a normal outcome of a retrain, not a failure. None otherwise (registration goes on, or is
    refused for what else failed, or production could not be scored: that fails closed)."""
    cc = evaluation.champion_challenger
    if evaluation.failed != ["beats_production"] or cc.production is None:
        return None
    f, interval = cc.figures, cc.interval
    spread = f", bootstrap interval [{interval.low:+.4f}, {interval.high:+.4f}]" if interval else ""
    return (
        f"kept version {cc.production_version}: the challenger did not beat it "
        f"({cc.primary} {f.candidate:.4f} vs {f.baseline:.4f}, difference "
        f"{f.difference:+.4f}{spread}; needs >= {f.required:.4f})"
    )


def registration_refusals(
    candidate: Candidate,
    evaluation: EvaluationReport,
    train_fingerprint: str,
    test_fingerprint: str,
    spec,
) -> list[str]:
    """Every reason not to register `candidate`, judged from the values alone (empty: register).

    The candidate must be the one `evaluation` judged, on the test rows given here, every gate of
    that evaluation passed, the candidate was trained on the train rows given here, and those rows
    come from data that passed every blocking data-quality check under the current spec.
    """
    reasons: list[str] = []
    cp = candidate.provenance
    ep = evaluation.provenance
    if not cp.get("digest"):
        return ["candidate_model carries no provenance: materialize candidate_model again"]
    if ep is None:
        return ["evaluation_report records no provenance: materialize it again"]
    if ep.candidate != cp["digest"]:
        reasons.append(
            f"evaluation_report judged candidate {ep.candidate}, not this "
            f"candidate {cp['digest']}: materialize evaluation_report (with its checks) for "
            "this candidate_model, then the registry"
        )
    estimation = evaluation.estimation
    calibration = calibration_digest(cp.get("calibration"))
    if estimation and estimation.calibration_digest != calibration:
        reasons.append(
            f"evaluation_report estimated on the test rows with calibration "
            f"{estimation.calibration_digest}, but candidate {cp['digest']} carries "
            f"{calibration}: materialize evaluation_report for this candidate_model"
        )
    if cp.get("trained_on") != train_fingerprint:
        reasons.append(
            f"candidate {cp['digest']} was trained on rows {cp.get('trained_on')}, but train_set "
            f"is {train_fingerprint}: materialize candidate_model and evaluation_report from the "
            "current train_set"
        )
    if ep.test_rows != test_fingerprint:
        reasons.append(
            f"evaluation_report scored test rows {ep.test_rows}, but test_set is "
            f"{test_fingerprint}: materialize evaluation_report on the current test_set"
        )
    if ep.split and cp.get("split") != ep.split:
        reasons.append(
            "the candidate and its evaluation come from different splits: materialize from the "
            "splits down in one selection"
        )
    failed = evaluation.failed
    missing = sorted(set(REQUIRED_GATES) - {g.name for g in evaluation.gates})
    if missing:
        reasons.append(f"evaluation_report holds no verdict for {missing}: materialize it again")
    if failed:
        reasons.append(f"gates not passed on this evaluation: {failed}")
    quality = cp.get("quality") or {}
    if not quality.get("passed"):
        reasons.append(
            f"the training data {cp.get('data')} did not pass its blocking data-quality checks "
            f"{quality.get('failed', '(no verdict recorded)')}: fix the data and run training_job"
        )
    if not (cp.get("split_check") or {}).get("passed"):
        reasons.append("the split the candidate was trained on failed disjoint_and_stratified")
    if cp.get("spec") != spec.name or cp.get("spec_digest") != spec_digest(spec):
        reasons.append(
            f"the candidate was trained under spec {cp.get('spec')!r} ({cp.get('spec_digest')}); "
            f"the current spec is {spec.name!r} ({spec_digest(spec)}): run training_job"
        )
    return reasons


def _short(splits: dict[str, Any]) -> str:
    return ", ".join(f"{n}: {(s or {}).get('train', '?')}" for n, s in splits.items())
