"""The one home of every step's settings: their types, choices, defaults and descriptions.

One pydantic model per group (split, training, evaluation; drift's is `drift.DriftThresholds`).
The Dagster `Config` classes (`mlassets.config`) are these models with Dagster's base added, so
the launchpad shows these descriptions, refuses a choice outside a `Literal` by name before the
run starts, and a direct call, the benchmarks and a run agree on every default.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# The metrics of a model's decisions (from confusion counts): reported, gated, estimated before
# labels (`estimation`) and judged for degradation (`drift`).
LABEL_METRICS = ("accuracy", "precision", "recall", "f1")
# Every test-set metric an evaluation reports; each metric gate is named after one.
METRICS = (*LABEL_METRICS, "roc_auc", "pr_auc")
Metric = Literal["accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc"]
LabelMetric = Literal["accuracy", "precision", "recall", "f1"]

# TrainingSettings fields that act after the search (threshold, calibration), not in it.
POST_SEARCH_SETTINGS = ("tune_threshold", "threshold_metric", "calibration")

Strategy = Literal["fast", "seed_grid", "grid", "random", "halving", "fixed"]
Estimator = Literal["random_forest", "extra_trees", "hist_gradient_boosting", "logistic_regression"]
Backend = Literal["loky", "dask", "ray"]
ThresholdMetric = Literal[
    "f1", "f2", "precision", "recall", "accuracy", "balanced_accuracy", "mcc", "youden"
]
CalibrationMethod = Literal["temperature", "sigmoid", "isotonic"]


class Settings(BaseModel):
    """Immutable, and refusing an unknown key by name (a typo is not a silent default)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class SplitSettings(Settings):
    """How `features` is split into train, validation and test sets."""

    test_fraction: float = Field(
        default=0.2, gt=0, lt=1, description="Share of rows held out for the test set."
    )
    validation_fraction: float = Field(
        default=0.1,
        ge=0,
        lt=1,
        description="Share of rows for the validation set (threshold tuning).",
    )
    seed: int = Field(default=42, description="Seed of the random split.")
    stratify: bool = Field(default=True, description="Keep the positive rate equal across splits.")
    time_ordered: bool = Field(
        default=False,
        description="Split by the spec's timestamp (newest rows to test) instead of at random.",
    )


class TrainingSettings(Settings):
    """The estimator and the search that tunes it. The default is `fast` (gradient boosting tuned
    by successive halving: the seed grid's F1 and PR AUC, or within noise of them, in a few per
    cent of its time, see benchmarks/RESULTS.md); `seed_grid` is the seed's grid search."""

    strategy: Strategy = Field(
        default="fast",
        description="fast (histogram gradient boosting, successive halving over its depth), "
        "seed_grid (the seed's RandomForest grid), grid, random, halving or fixed.",
    )
    estimator: Estimator = Field(
        default="random_forest",
        description="random_forest, extra_trees, hist_gradient_boosting or logistic_regression "
        "(for grid, random, halving and fixed; fast and seed_grid bring their own).",
    )
    param_grid: dict[str, Any] = Field(
        default_factory=dict,
        description="Search space for grid/random/halving; keys are estimator parameters.",
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="Fixed estimator parameters (applied before the search)."
    )
    n_iter: int = Field(default=20, ge=1, description="Candidates sampled by random and halving.")
    cv_folds: int = Field(default=5, ge=2, description="Stratified cross-validation folds.")
    scoring: str = Field(default="f1", description="sklearn scorer the search maximises.")
    seed: int = Field(default=42, description="Seed of the estimator, folds and sampling.")
    n_jobs: int | None = Field(
        default=None,
        description="Parallel fits (joblib); -1 uses every core. Default: 1 for "
        "hist_gradient_boosting (the `fast` strategy), whose fits already use every core "
        "(OpenMP) so that more processes would only copy the data; every core otherwise.",
    )
    parallel_backend: Backend = Field(
        default="loky",
        description="Where the search's fits run: loky (processes on the step's host; threads "
        "when the step runs in a daemonic Celery or Dask worker), dask (the cluster at "
        "scheduler_address) or ray (needs the .[ray] extra).",
    )
    scheduler_address: str | None = Field(
        default=None,
        description="The dask scheduler (e.g. tcp://127.0.0.1:8786) or ray cluster address of "
        "parallel_backend dask or ray.",
    )
    tune_threshold: bool = Field(
        default=True,
        description="Tune the decision threshold on the validation set and keep it in the model "
        "(false: predict at the estimator's default, 0.5 for probabilities).",
    )
    threshold_metric: ThresholdMetric = Field(
        default="f1",
        description="Metric the threshold maximises on the validation set: f1, f2, precision, "
        "recall, accuracy, balanced_accuracy, mcc or youden.",
    )
    # Temperature scaling: one parameter, so a validation set with 44 positives (the demo's)
    # cannot overfit it, and the smallest error of estimated F1 in `make bench` (section
    # estimation; benchmarks/RESULTS.md).
    calibration: CalibrationMethod = Field(
        default="temperature",
        description="How the positive-class probability is calibrated on the validation set for "
        "estimating performance before labels arrive: temperature, sigmoid or isotonic (the "
        "model's decisions do not change).",
    )

    def search_settings(self) -> dict[str, Any]:
        """The keyword arguments of `mlassets.ml.training.train_candidate` these settings give."""
        return {k: v for k, v in self.model_dump().items() if k not in POST_SEARCH_SETTINGS}


class EvaluationSettings(Settings):
    """What `evaluation_report` measures and the limits its blocking checks enforce.

    Every gate (the metric minimums, the trivial baseline, champion/challenger, fairness) is
    judged once, by `evaluation_report`, and recorded in the report."""

    # The metric floors (None: reported, not gated): none by default, since what a table allows
    # differs (the seed's accuracy >= 0.85 and F1 >= 0.80 refused a sound model of a 5,000-row
    # table with 20 % positives: F1 0.42 where predicting every row positive scores 0.33); a
    # spec's `gates` or a run's config sets them (mlassets.ml.gates).
    min_accuracy: float | None = Field(
        default=None, ge=0, le=1, description="accuracy_gate: minimum test accuracy."
    )
    min_precision: float | None = Field(
        default=None, ge=0, le=1, description="precision_gate: minimum test precision."
    )
    min_recall: float | None = Field(
        default=None, ge=0, le=1, description="recall_gate: minimum test recall."
    )
    min_f1: float | None = Field(default=None, ge=0, le=1, description="f1_gate: minimum test F1.")
    min_roc_auc: float | None = Field(
        default=None, ge=0, le=1, description="roc_auc_gate: minimum test ROC AUC."
    )
    min_pr_auc: float | None = Field(
        default=None, ge=0, le=1, description="pr_auc_gate: minimum test PR AUC."
    )
    # the figures behind 0.05: benchmarks section gates (benchmarks/RESULTS.md)
    min_lift: float | None = Field(
        default=0.05,
        description="beats_baseline: how far the primary metric must rise above a trivial "
        "predictor's on the same test rows.",
    )
    primary_metric: Metric = Field(
        default="f1",
        description="Metric the candidate is compared with production on: accuracy, precision, "
        "recall, f1, roc_auc or pr_auc.",
    )
    tolerance: float | None = Field(
        default=0.0,
        description="beats_production passes when candidate >= production - tolerance "
        "(negative: the candidate must improve by at least |tolerance|).",
    )
    bootstrap_resamples: int = Field(
        default=1000,
        ge=0,
        description="Paired bootstrap resamples for the interval of candidate - production "
        "(reported, not gated; 0 turns it off).",
    )
    seed: int = Field(default=42, description="Seed of the bootstrap and permutation importance.")
    # Selection rates differ wherever base rates do (legitimately or by sampling chance), so
    # demographic parity is reported, not gated, and equalized odds is the gate.
    max_demographic_parity: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="fairness: largest allowed gap in selection rate between groups (unset: "
        "reported only: selection rates differ wherever base rates do, legitimately or by "
        "sampling chance, so equalized odds is the gate).",
    )
    max_equalized_odds: float | None = Field(
        default=0.1,
        ge=0,
        le=1,
        description="fairness: largest allowed gap in TPR or FPR between groups.",
    )
    min_group_size: int = Field(
        default=30,
        ge=1,
        description="fairness: a rate is gated only where its denominator (a group's rows for the "
        "selection rate, its positives for TPR, its negatives for FPR) has at least this many rows.",
    )
    importance_repeats: int = Field(
        default=5,
        ge=0,
        description="Shuffles per column for permutation importance (0 turns it off).",
    )
    importance_scoring: str = Field(
        default="roc_auc", description="sklearn scorer whose drop measures a column's importance."
    )
    importance_max_rows: int = Field(
        default=10_000, ge=1, description="Test rows permutation importance samples per repeat."
    )
    top_k: int = Field(default=10, ge=1, description="Columns in the importance table and chart.")
    calibration_bins: int = Field(default=10, ge=2, description="Bins of the reliability curve.")
    allow_unscored_production: bool = Field(
        default=False,
        description="beats_production passes when production cannot be scored on the test set "
        "for good (e.g. it was trained on other columns), saying why; unset, it fails, so such "
        "a production model never opens the gate.",
    )

    def thresholds(self) -> dict[str, float | None]:
        """The metric gates' minimums by metric name (None: not gated)."""
        return {m: getattr(self, f"min_{m}") for m in METRICS}


SPLIT = SplitSettings()
TRAINING = TrainingSettings()
EVALUATION = EvaluationSettings()


# Ceilings on one source file or landed batch (a spec's `max_rows` / `max_bytes` override them):
# a small compressed file that expands to far more rows than a machine can hold is refused from
# its metadata (Parquet) or while reading (CSV), not after minutes of work. 50,000,000 rows is
# five times the largest table the benchmarks train on; 16 GiB in memory is two thirds of this
# project's reference machine.
MAX_ROWS = 50_000_000
MAX_BYTES = 16 * 1024**3
