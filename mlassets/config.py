"""Run configuration for the asset families (settable from the launchpad or `-c run_config.yaml`)."""

from typing import Any

from dagster import Config
from pydantic import Field


class SplitConfig(Config):
    """How `features` is split into train, validation and test sets."""

    test_fraction: float = Field(
        default=0.2, description="Share of rows held out for the test set."
    )
    validation_fraction: float = Field(
        default=0.1, description="Share of rows for the validation set (threshold tuning)."
    )
    seed: int = Field(default=42, description="Seed of the random split.")
    stratify: bool = Field(default=True, description="Keep the positive rate equal across splits.")
    time_ordered: bool = Field(
        default=False,
        description="Split by the spec's timestamp (newest rows to test) instead of at random.",
    )


class TrainingConfig(Config):
    """The estimator and the search that tunes it. The default is `fast` (gradient boosting tuned
    by successive halving: the seed grid's F1 and PR AUC, or within noise of them, in a few per
    cent of its time, see benchmarks/RESULTS.md); `seed_grid` is the seed's grid search."""

    strategy: str = Field(
        default="fast",
        description="fast (histogram gradient boosting, successive halving over its depth), "
        "seed_grid (the seed's RandomForest grid), grid, random, halving or fixed.",
    )
    estimator: str = Field(
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
    n_iter: int = Field(default=20, description="Candidates sampled by random and halving.")
    cv_folds: int = Field(default=5, description="Stratified cross-validation folds.")
    scoring: str = Field(default="f1", description="sklearn scorer the search maximises.")
    seed: int = Field(default=42, description="Seed of the estimator, folds and sampling.")
    n_jobs: int = Field(default=-1, description="Parallel fits (joblib); -1 uses every core.")
    tune_threshold: bool = Field(
        default=True,
        description="Tune the decision threshold on the validation set and keep it in the model "
        "(false: predict at the estimator's default, 0.5 for probabilities).",
    )
    threshold_metric: str = Field(
        default="f1",
        description="Metric the threshold maximises on the validation set: f1, f2, precision, "
        "recall, accuracy, balanced_accuracy, mcc or youden.",
    )

    def search_settings(self) -> dict[str, Any]:
        """The keyword arguments of `mlassets.ml.training.train_candidate` these settings give."""
        return self.model_dump(exclude={"tune_threshold", "threshold_metric"})


class GateConfig(Config):
    """Minimum test-set metrics a candidate needs before it is registered (None: not gated)."""

    min_accuracy: float | None = 0.85
    min_precision: float | None = None
    min_recall: float | None = None
    min_f1: float | None = 0.80
    min_roc_auc: float | None = None
    min_pr_auc: float | None = None

    def thresholds(self) -> dict[str, float | None]:
        return {
            "accuracy": self.min_accuracy,
            "precision": self.min_precision,
            "recall": self.min_recall,
            "f1": self.min_f1,
            "roc_auc": self.min_roc_auc,
            "pr_auc": self.min_pr_auc,
        }


class EvaluationConfig(Config):
    """What `evaluation_report` measures and the limits its blocking checks enforce.

    The checks `beats_production` and `fairness` read their verdicts from the report, so these
    limits are set on the `evaluation_report` op. A maximum of None reports without gating.
    """

    primary_metric: str = Field(
        default="f1",
        description="Metric the candidate is compared with production on: accuracy, precision, "
        "recall, f1, roc_auc or pr_auc.",
    )
    tolerance: float = Field(
        default=0.0,
        description="beats_production passes when candidate >= production - tolerance "
        "(negative: the candidate must improve by at least |tolerance|).",
    )
    bootstrap_resamples: int = Field(
        default=1000,
        description="Paired bootstrap resamples for the interval of candidate - production "
        "(reported, not gated; 0 turns it off).",
    )
    seed: int = Field(default=42, description="Seed of the bootstrap and permutation importance.")
    max_demographic_parity: float | None = Field(
        default=None,
        description="fairness: largest allowed gap in selection rate between groups (None: report "
        "only, the default: selection rates differ wherever base rates do, legitimately or by "
        "sampling chance, so equalized odds is the gate).",
    )
    max_equalized_odds: float | None = Field(
        default=0.1,
        description="fairness: largest allowed gap in TPR or FPR between groups (None: report only).",
    )
    min_group_size: int = Field(
        default=30,
        description="fairness: a rate is gated only where its denominator (a group's rows for the "
        "selection rate, its positives for TPR, its negatives for FPR) has at least this many rows.",
    )
    importance_repeats: int = Field(
        default=5, description="Shuffles per column for permutation importance (0 turns it off)."
    )
    importance_scoring: str = Field(
        default="roc_auc", description="sklearn scorer whose drop measures a column's importance."
    )
    importance_max_rows: int = Field(
        default=10_000, description="Test rows permutation importance samples per repeat."
    )
    top_k: int = Field(default=10, description="Columns in the importance table and chart.")
    calibration_bins: int = Field(default=10, description="Bins of the reliability curve.")


class DriftConfig(Config):
    """Thresholds of the retrain decision (shared by `drift_report` and `drift_sensor`).

    Defaults follow the seed (alpha 0.05, a 0.05 metric drop, 10,000 recent rows) plus a
    multiple-testing correction and effect-size minimums; see `mlassets.ml.drift.DriftThresholds`
    for the reason behind each.
    """

    alpha: float = Field(default=0.05, description="Significance after the correction.")
    correction: str = Field(
        default="bh", description="bh (Benjamini-Hochberg), bonferroni or none."
    )
    min_effect_numeric: float = Field(
        default=0.1, description="Wasserstein distance / reference std a numeric drift must reach."
    )
    min_effect_categorical: float = Field(
        default=0.1, description="Jensen-Shannon distance a categorical drift must reach."
    )
    max_metric_drop: float = Field(
        default=0.05, description="Accuracy or F1 drop on labelled recent rows that is degraded."
    )
    min_rows: int = Field(default=10_000, description="Recent rows needed before any retrain.")
    min_labelled_rows: int = Field(
        default=1_000, description="Labelled recent rows needed to judge degradation."
    )
    window_batches: int = Field(
        default=0,
        description="Retrain on the source plus the newest N recent batches (0: all of them).",
    )

    def thresholds(self):
        """The pure-core thresholds these settings describe."""
        from mlassets.ml.drift import DriftThresholds

        return DriftThresholds(
            alpha=self.alpha,
            correction=self.correction,
            min_effect_numeric=self.min_effect_numeric,
            min_effect_categorical=self.min_effect_categorical,
            max_metric_drop=self.max_metric_drop,
            min_rows=self.min_rows,
            min_labelled_rows=self.min_labelled_rows,
        )
