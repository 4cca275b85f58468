"""Typed records one step hands the next: the evaluation and its gate verdicts, a registered
version, the staged one, the promotion.

Each is a frozen pydantic model with a schema version, written as JSON by the value store with
its record name beside it (`dump`) and read back into the same model (`load`): a field missing,
misspelt or of the wrong type fails where it is read, naming it, instead of a `KeyError` three
steps later; a record written by another schema version is refused and says to materialize again.
"""

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

SCHEMA_VERSION = 1
RECORD_KEY = "mlassets.record"  # the record's name in its JSON (plain dicts never carry it)


class RecordError(ValueError):
    """A stored record cannot be read as the record it names."""


class Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    schema_version: int = SCHEMA_VERSION
    KIND: ClassVar[str]


class Part(BaseModel):
    """A typed part of a record (no schema version of its own: its record's holds)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


# -- the evaluation and its gate verdicts --------------------------------------------------------

Table = list[
    dict[str, Any]
]  # a table's rows (per threshold, group, bin or column): shown, not read


class GateVerdict(Part):
    """One gate as `evaluation_report` judged it: the checks report it, registration requires it
    passed. `metric`/`value`/`threshold` for a figure against a limit; `baseline` is what a
    trivial predictor scores (`beats_baseline`)."""

    name: str
    passed: bool
    description: str
    metric: str | None = None
    value: float | None = None
    threshold: float | None = None
    baseline: float | None = None


class Limit(Part):
    """A gate's limit and where it came from (run config, the spec or the default)."""

    value: float | None
    source: str


class Scores(Part):
    """A model's metrics on the test rows (`evaluation.evaluate`)."""

    metrics: dict[str, float]
    confusion_matrix: dict[str, int]
    rows: int
    positive_rate: float
    threshold: float | None = None


class ComparisonFigures(Part):
    metric: str
    candidate: float
    baseline: float | None
    difference: float | None
    tolerance: float
    required: float | None


class Interval(Part):
    """The paired bootstrap's interval (and mean) of candidate minus production."""

    low: float | None
    high: float | None
    mean: float | None


class ChampionChallenger(Part):
    """The candidate against the production model on the same test rows."""

    passed: bool
    primary: str
    figures: ComparisonFigures
    message: str
    interval: Interval | None
    production_version: str | None
    production: Scores | None  # None: no production, or it could not be scored (`error`)
    error: str | None


class ColumnFairness(Part):
    column: str
    passed: bool
    demographic_parity_difference: float | None
    equalized_odds_difference: float | None
    sampling_noise: dict[str, float | None]
    excluded_groups: list[str]
    ungated_rates: dict[str, list[str]]
    violations: list[str]
    offending_groups: list[str]
    groups: Table


class Fairness(Part):
    passed: bool
    message: str
    max_demographic_parity: float | None
    max_equalized_odds: float | None
    min_group_size: int
    offending_groups: dict[str, list[str]]
    columns: list[ColumnFairness]

    def worst_equalized_odds(self) -> float | None:
        gaps = [c.equalized_odds_difference for c in self.columns]
        return max((g for g in gaps if g is not None), default=None)


class Importance(Part):
    scoring: str
    repeats: int
    top_k: Table
    columns: Table


class CalibrationFit(Part):
    """How well a probability fits the labels (`explain.calibration`)."""

    brier: float
    expected_calibration_error: float
    n_bins: int
    strategy: str
    curve: Table


class Threshold(Part):
    value: float
    default: float


class Bounds(Part):
    """An estimated metric and the interval its realized value falls in (`Estimate.level`)."""

    estimate: float | None
    low: float | None
    high: float | None


class EstimateOnTest(Part):
    """What the label-free estimate says on the test rows, beside what their labels say: the
    baseline estimates on unlabelled rows are compared with (`steps.estimation_on_test`)."""

    rows: int
    metrics: dict[str, Bounds]
    expected_positive_rate: float | None
    predicted_positive_rate: float | None
    level: float
    calibration: str
    calibration_digest: str  # registration refuses another calibration beside it
    calibrated_brier: float
    calibrated_ece: float


class EvaluationProvenance(Part):
    """What was judged: registration compares it with the values it is given."""

    candidate: str  # the candidate's digest
    test_rows: str  # the test rows' fingerprint
    split: dict[str, Any] | None
    spec: str
    spec_digest: str
    dagster_run_id: str | None


class EvaluationReport(Record):
    """`evaluation_report`: the candidate on the test rows, every gate judged once
    (`report.build_evaluation`, completed by `steps.evaluate_and_log`)."""

    KIND: ClassVar[str] = "evaluation"
    metrics: dict[str, float]
    confusion_matrix: dict[str, int]
    rows: int
    positive_rate: float
    gates: list[GateVerdict]
    passed: bool
    limits: dict[str, Limit]
    threshold: Threshold
    by_threshold: Table
    champion_challenger: ChampionChallenger
    fairness: Fairness
    importance: Importance | None
    calibration: CalibrationFit | None
    estimation: EstimateOnTest | None = None
    provenance: EvaluationProvenance | None = None
    mlflow_run_id: str | None = None
    artifacts: list[str] = Field(default_factory=list)

    def gate(self, name: str) -> GateVerdict | None:
        return next((g for g in self.gates if g.name == name), None)

    @property
    def failed(self) -> list[str]:
        """The gates not passed, by name."""
        return [g.name for g in self.gates if not g.passed]


# -- monitoring: performance measured on labels, estimated before them, the decision -------------


class MetricChange(Part):
    """A metric realized on labelled recent rows against the version's test-set figure."""

    baseline: float | None
    current: float | None
    drop: float | None
    degraded: bool = False


class Degradation(Part):
    """The production model scored on the labelled recent rows (`drift._degradation`)."""

    evaluated: bool
    degraded: bool
    labelled_rows: int
    evaluated_rows: int
    sampled: bool
    max_drop: float
    metrics: dict[str, MetricChange]
    note: str
    positive_rate: float | None = None


class EstimatedMetric(Bounds):
    """An estimated metric against the estimate on the test rows (like with like)."""

    baseline: float | None = None  # estimated on the test rows
    baseline_realized: float | None = None  # realized on the test rows, shown
    drop: float | None = None
    degraded: bool = False


class EstimateReliability(Part):
    """How far the rows lie outside the training range, overall and per batch (`domain`)."""

    max_outside_share: float
    outside: dict[str, Any]
    unreliable_batches: list[str]
    batches: dict[str, dict[str, Any]]


class EstimatedPerformance(Part):
    """The metrics estimated before labels (CBPE) and whether the estimate decides
    (`drift._estimated`)."""

    evaluated: bool = False
    degraded: bool = False
    decides: bool = False
    reliable: bool = True
    rows: int = 0
    scope: str = ""
    covered: bool = False
    sampled: bool = False
    max_drop: float | None = None
    metrics: dict[str, EstimatedMetric] = Field(default_factory=dict)
    by_batch: Table = Field(default_factory=list)
    by_batch_metric: str | None = None
    note: str = ""
    expected_positive_rate: float | None = None
    predicted_positive_rate: float | None = None
    calibration: str | None = None
    reliability: EstimateReliability | None = None


class DriftDecision(Record):
    """`drift_report`: what monitoring found on the recent rows and whether to retrain. Only
    `retrain`, `reasons` and `skipped_batches` when nothing could be compared (no production)."""

    KIND: ClassVar[str] = "drift_report"
    retrain: bool
    reasons: list[str]
    skipped_batches: list[dict[str, Any]] = Field(default_factory=list)
    drifted: list[str] = Field(default_factory=list)
    degraded: bool = False
    degradation: Degradation | None = None
    estimated_degraded: bool = False
    estimated: EstimatedPerformance | None = None
    rows: int = 0
    reference_rows: int = 0
    compared_with: dict[str, Any] = Field(default_factory=dict)
    min_rows: int | None = None
    enough_rows: bool = False
    features: Table = Field(default_factory=list)
    unseen: dict[str, dict[str, int]] = Field(default_factory=dict)
    config: dict[str, Any] = Field(default_factory=dict)


# -- the registry group --------------------------------------------------------------------------


class Registration(Record):
    """`registered_model`: the version registered from the candidate `evaluation_report` judged
    (`steps.register_candidate`); what staging checks its inputs against."""

    KIND: ClassVar[str] = "registration"
    name: str
    version: str
    run_id: str
    model_uri: str
    candidate: str  # the candidate's digest
    test_rows: str  # the fingerprint of the test rows it was evaluated on
    evaluated_against: str | None  # the production version it was compared with (None: none)


class Staged(Record):
    """`staging_model`: the version `staging` names once it loaded and predicted like the
    candidate (`steps.stage`); what promotion checks the aliases against."""

    KIND: ClassVar[str] = "staged"
    name: str
    version: str
    candidate: str
    evaluated_against: str | None


class Promotion(Record):
    """`production_model`: the version now `production` and the one it replaced."""

    KIND: ClassVar[str] = "promotion"
    name: str
    production: str
    previous: str | None


RECORDS: dict[str, type[Record]] = {
    cls.KIND: cls for cls in (EvaluationReport, DriftDecision, Registration, Staged, Promotion)
}


def jsonable(value: Any) -> Any:
    """Plain Python values a record validates from: numpy scalars and arrays unwrapped, frames as
    lists of records, NaN and infinities as None (JSON holds neither)."""
    import math

    import numpy as np
    import pandas as pd

    if isinstance(value, pd.DataFrame):
        frame = value if isinstance(value.index, pd.RangeIndex) else value.reset_index()
        return jsonable(frame.to_dict(orient="records"))
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [jsonable(v) for v in value]
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return value


def dump(record: Record) -> dict[str, Any]:
    """The record as JSON-ready data, named so that `load` knows which model reads it."""
    return {RECORD_KEY: record.KIND, **record.model_dump(mode="json")}


def is_record(data: Any) -> bool:
    return isinstance(data, dict) and RECORD_KEY in data


def load(data: dict[str, Any], where: str) -> Record:
    """The record `data` names, validated; `where` (a file) is named in every refusal."""
    fields = dict(data)
    kind = fields.pop(RECORD_KEY)
    cls = RECORDS.get(kind)
    if cls is None:
        raise RecordError(f"{where}: unknown record {kind!r} (known: {', '.join(RECORDS)})")
    version = fields.get("schema_version")
    if version != SCHEMA_VERSION:
        raise RecordError(
            f"{where}: a {kind} record of schema version {version}, this mlassets reads "
            f"version {SCHEMA_VERSION}: materialize it again"
        )
    try:
        return cls.model_validate(fields)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or kind}: {err['msg']}"
            for err in e.errors()[:5]
        )
        raise RecordError(f"{where}: not a valid {kind} record: {problems}") from None
