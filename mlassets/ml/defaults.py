"""The one home of every step's default settings.

The Dagster `Config` classes (`mlassets.config`) take their defaults from these dataclasses, and
so do the core's functions, so the launchpad, the benchmarks and a direct call agree.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# The test-set metrics every evaluation reports and each metric gate is named after.
METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc")


# TrainingSettings fields that act after the search (threshold, calibration), not in it.
POST_SEARCH_SETTINGS = ("tune_threshold", "threshold_metric", "calibration")


@dataclass(frozen=True)
class SplitSettings:
    test_fraction: float = 0.2
    validation_fraction: float = 0.1
    seed: int = 42
    stratify: bool = True
    time_ordered: bool = False


@dataclass(frozen=True)
class TrainingSettings:
    strategy: str = "fast"
    estimator: str = "random_forest"
    param_grid: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    n_iter: int = 20
    cv_folds: int = 5
    scoring: str = "f1"
    seed: int = 42
    # Parallel fits of the search; None: `training.search_jobs` decides (1 process for an estimator
    # that uses every core itself, every core otherwise, the whole cluster on dask or ray)
    n_jobs: int | None = None
    # joblib backend of the search's fits (mlassets.ml.parallel): loky on this host, or a
    # dask / ray cluster at scheduler_address
    parallel_backend: str = "loky"
    scheduler_address: str | None = None
    tune_threshold: bool = True
    threshold_metric: str = "f1"
    # How the positive-class probability is calibrated on the validation set for estimating
    # performance before labels arrive (mlassets.ml.estimation; the model's decisions do not
    # change). Temperature scaling: one parameter, so a validation set with 44 positives (the
    # demo's) cannot overfit it, and the smallest error of estimated F1 in `make bench`
    # (section estimation; benchmarks/RESULTS.md).
    calibration: str = "temperature"

    def search_settings(self) -> dict[str, Any]:
        """The keyword arguments of `mlassets.ml.training.train_candidate` these settings give."""
        return {k: v for k, v in asdict(self).items() if k not in POST_SEARCH_SETTINGS}


@dataclass(frozen=True)
class EvaluationSettings:
    primary_metric: str = "f1"
    tolerance: float = 0.0
    bootstrap_resamples: int = 1000
    seed: int = 42
    # Selection rates differ wherever base rates do (legitimately or by sampling chance), so
    # demographic parity is reported, not gated, and equalized odds is the gate.
    max_demographic_parity: float | None = None
    max_equalized_odds: float | None = 0.1
    min_group_size: int = 30
    importance_repeats: int = 5
    importance_scoring: str = "roc_auc"
    importance_max_rows: int = 10_000
    top_k: int = 10
    calibration_bins: int = 10
    # A production model that cannot be scored on the test set fails beats_production (a load
    # error must not open the gate) unless this is set, e.g. after a spec change of columns.
    allow_unscored_production: bool = False
    # The metric floors (None: reported, not gated): none by default, since what a table allows
    # differs (the seed's accuracy >= 0.85 and F1 >= 0.80 refused a sound model of a 5,000-row
    # table with 20 % positives: F1 0.42 where predicting every row positive scores 0.33); a
    # spec's `gates` or a run's config sets them (mlassets.ml.gates).
    min_accuracy: float | None = None
    min_precision: float | None = None
    min_recall: float | None = None
    min_f1: float | None = None
    min_roc_auc: float | None = None
    min_pr_auc: float | None = None
    # beats_baseline: the primary metric at least this far above a trivial predictor's on the
    # same test rows (mlassets.ml.gates.TRIVIAL); the figures behind it: benchmarks section gates
    min_lift: float | None = 0.05

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
