"""Run configuration for the asset families (settable from the launchpad or `-c run_config.yaml`)."""

from typing import Any

from dagster import Config
from pydantic import Field

from mlassets.ml.defaults import (
    EVALUATION,
    METRICS,
    POST_SEARCH_SETTINGS,
    SPLIT,
    TRAINING,
)
from mlassets.ml.drift import DriftThresholds

DRIFT = DriftThresholds()


class SplitConfig(Config):
    """How `features` is split into train, validation and test sets."""

    test_fraction: float = Field(
        default=SPLIT.test_fraction, description="Share of rows held out for the test set."
    )
    validation_fraction: float = Field(
        default=SPLIT.validation_fraction,
        description="Share of rows for the validation set (threshold tuning).",
    )
    seed: int = Field(default=SPLIT.seed, description="Seed of the random split.")
    stratify: bool = Field(
        default=SPLIT.stratify, description="Keep the positive rate equal across splits."
    )
    time_ordered: bool = Field(
        default=SPLIT.time_ordered,
        description="Split by the spec's timestamp (newest rows to test) instead of at random.",
    )


class TrainingConfig(Config):
    """The estimator and the search that tunes it. The default is `fast` (gradient boosting tuned
    by successive halving: the seed grid's F1 and PR AUC, or within noise of them, in a few per
    cent of its time, see benchmarks/RESULTS.md); `seed_grid` is the seed's grid search."""

    strategy: str = Field(
        default=TRAINING.strategy,
        description="fast (histogram gradient boosting, successive halving over its depth), "
        "seed_grid (the seed's RandomForest grid), grid, random, halving or fixed.",
    )
    estimator: str = Field(
        default=TRAINING.estimator,
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
    n_iter: int = Field(
        default=TRAINING.n_iter, description="Candidates sampled by random and halving."
    )
    cv_folds: int = Field(
        default=TRAINING.cv_folds, description="Stratified cross-validation folds."
    )
    scoring: str = Field(
        default=TRAINING.scoring, description="sklearn scorer the search maximises."
    )
    seed: int = Field(
        default=TRAINING.seed, description="Seed of the estimator, folds and sampling."
    )
    n_jobs: int | None = Field(
        default=TRAINING.n_jobs,
        description="Parallel fits (joblib); -1 uses every core. Default: 1 for "
        "hist_gradient_boosting (the `fast` strategy), whose fits already use every core "
        "(OpenMP) so that more processes would only copy the data; every core otherwise.",
    )
    parallel_backend: str = Field(
        default=TRAINING.parallel_backend,
        description="Where the search's fits run: loky (processes on the step's host; threads "
        "when the step runs in a daemonic Celery or Dask worker), dask (the cluster at "
        "scheduler_address) or ray (needs the .[ray] extra).",
    )
    scheduler_address: str | None = Field(
        default=TRAINING.scheduler_address,
        description="The dask scheduler (e.g. tcp://127.0.0.1:8786) or ray cluster address of "
        "parallel_backend dask or ray.",
    )
    tune_threshold: bool = Field(
        default=TRAINING.tune_threshold,
        description="Tune the decision threshold on the validation set and keep it in the model "
        "(false: predict at the estimator's default, 0.5 for probabilities).",
    )
    threshold_metric: str = Field(
        default=TRAINING.threshold_metric,
        description="Metric the threshold maximises on the validation set: f1, f2, precision, "
        "recall, accuracy, balanced_accuracy, mcc or youden.",
    )
    calibration: str = Field(
        default=TRAINING.calibration,
        description="How the positive-class probability is calibrated on the validation set for "
        "estimating performance before labels arrive: temperature, sigmoid or isotonic (the "
        "model's decisions do not change).",
    )

    def search_settings(self) -> dict[str, Any]:
        """The keyword arguments of `mlassets.ml.training.train_candidate` these settings give."""
        return self.model_dump(exclude=set(POST_SEARCH_SETTINGS))


class EvaluationConfig(Config):
    """What `evaluation_report` measures and the limits its blocking checks enforce.

    Every gate (the metric minimums, the trivial baseline, champion/challenger, fairness) is
    judged here, once, and recorded in the report; the checks on `evaluation_report` report
    those verdicts and `registered_model` registers only what that same evaluation passed.

    A gate limit left unset (None) here takes the model's own (its spec's `gates`), else the
    default (`mlassets.ml.gates.resolve`): set one here to change it for one run.
    """

    min_accuracy: float | None = Field(
        default=None, description="accuracy_gate: minimum test accuracy (default: none)."
    )
    min_precision: float | None = Field(
        default=None, description="precision_gate: minimum test precision (default: none)."
    )
    min_recall: float | None = Field(
        default=None, description="recall_gate: minimum test recall (default: none)."
    )
    min_f1: float | None = Field(
        default=None, description="f1_gate: minimum test F1 (default: none)."
    )
    min_roc_auc: float | None = Field(
        default=None, description="roc_auc_gate: minimum test ROC AUC (default: none)."
    )
    min_pr_auc: float | None = Field(
        default=None, description="pr_auc_gate: minimum test PR AUC (default: none)."
    )
    min_lift: float | None = Field(
        default=None,
        description="beats_baseline: how far the primary metric must rise above a trivial "
        f"predictor's on the same test rows (default {EVALUATION.min_lift}).",
    )

    def report_settings(self, spec=None) -> dict[str, Any]:
        """The keyword arguments of `mlassets.ml.report.build_evaluation` these settings give,
        each gate limit resolved against `spec`'s gates and the defaults; and where each limit
        came from (`sources`, for the advice when a gate fails)."""
        from mlassets.ml.gates import LIMITS, resolve

        limits, sources = resolve(self.model_dump(), spec.gates if spec else None, EVALUATION)
        settings = self.model_dump(exclude=set(LIMITS))
        settings["thresholds"] = {m: limits[f"min_{m}"] for m in METRICS}
        for name in ("min_lift", "tolerance", "max_equalized_odds", "max_demographic_parity"):
            settings[name] = limits[name]
        return {**settings, "sources": sources}

    primary_metric: str = Field(
        default=EVALUATION.primary_metric,
        description="Metric the candidate is compared with production on: accuracy, precision, "
        "recall, f1, roc_auc or pr_auc.",
    )
    tolerance: float | None = Field(
        default=None,
        description="beats_production passes when candidate >= production - tolerance "
        f"(negative: the candidate must improve by at least |tolerance|; default "
        f"{EVALUATION.tolerance}).",
    )
    bootstrap_resamples: int = Field(
        default=EVALUATION.bootstrap_resamples,
        description="Paired bootstrap resamples for the interval of candidate - production "
        "(reported, not gated; 0 turns it off).",
    )
    seed: int = Field(
        default=EVALUATION.seed, description="Seed of the bootstrap and permutation importance."
    )
    max_demographic_parity: float | None = Field(
        default=None,
        description="fairness: largest allowed gap in selection rate between groups (default: "
        "report only: selection rates differ wherever base rates do, legitimately or by "
        "sampling chance, so equalized odds is the gate).",
    )
    max_equalized_odds: float | None = Field(
        default=None,
        description="fairness: largest allowed gap in TPR or FPR between groups (default "
        f"{EVALUATION.max_equalized_odds}).",
    )
    min_group_size: int = Field(
        default=EVALUATION.min_group_size,
        description="fairness: a rate is gated only where its denominator (a group's rows for the "
        "selection rate, its positives for TPR, its negatives for FPR) has at least this many rows.",
    )
    importance_repeats: int = Field(
        default=EVALUATION.importance_repeats,
        description="Shuffles per column for permutation importance (0 turns it off).",
    )
    importance_scoring: str = Field(
        default=EVALUATION.importance_scoring,
        description="sklearn scorer whose drop measures a column's importance.",
    )
    importance_max_rows: int = Field(
        default=EVALUATION.importance_max_rows,
        description="Test rows permutation importance samples per repeat.",
    )
    top_k: int = Field(
        default=EVALUATION.top_k, description="Columns in the importance table and chart."
    )
    calibration_bins: int = Field(
        default=EVALUATION.calibration_bins, description="Bins of the reliability curve."
    )
    allow_unscored_production: bool = Field(
        default=EVALUATION.allow_unscored_production,
        description="beats_production passes when production cannot be scored on the test set "
        "(e.g. it was trained on other columns); default: it fails, so a load error never opens "
        "the gate.",
    )


class DriftConfig(Config):
    """Thresholds of the retrain decision (shared by `drift_report` and `drift_sensor`).

    Defaults follow the seed (alpha 0.05, a 0.05 metric drop, 10,000 recent rows) plus a
    multiple-testing correction, effect-size minimums and a 0.05 drop of the performance
    estimated before labels; see `mlassets.ml.drift.DriftThresholds`
    for the reason behind each.
    """

    alpha: float = Field(default=DRIFT.alpha, description="Significance after the correction.")
    correction: str = Field(
        default=DRIFT.correction, description="bh (Benjamini-Hochberg), bonferroni or none."
    )
    min_effect_numeric: float = Field(
        default=DRIFT.min_effect_numeric,
        description="Wasserstein distance / reference std a numeric drift must reach.",
    )
    min_effect_categorical: float = Field(
        default=DRIFT.min_effect_categorical,
        description="Jensen-Shannon distance a categorical drift must reach.",
    )
    max_metric_drop: float = Field(
        default=DRIFT.max_metric_drop,
        description="Accuracy or F1 drop on labelled recent rows that is degraded.",
    )
    min_rows: int = Field(
        default=DRIFT.min_rows, description="Recent rows needed before any retrain."
    )
    min_labelled_rows: int = Field(
        default=DRIFT.min_labelled_rows,
        description="Labelled recent rows needed to judge degradation.",
    )
    estimated_degradation: bool = Field(
        default=DRIFT.estimated_degradation,
        description="Retrain when the performance estimated from the production model's "
        "calibrated probabilities drops, before any label arrives (labels decide once they "
        "cover every recent row).",
    )
    max_estimated_drop: float = Field(
        default=DRIFT.max_estimated_drop,
        description="Estimated accuracy or F1 drop, against the estimate on the test rows, "
        "that is degraded.",
    )
    max_outside_share: float = Field(
        default=DRIFT.max_outside_share,
        description="Share of a batch's rows outside the production model's training range "
        "(a numeric value beyond it, an unseen category) above which the batch's performance "
        "estimate is marked unreliable and does not decide.",
    )
    window_batches: int = Field(
        default=0,
        description="Retrain on the source plus the newest N recent batches (0: all of them).",
    )

    def thresholds(self):
        """The pure-core thresholds these settings describe."""
        return DriftThresholds(
            alpha=self.alpha,
            correction=self.correction,
            min_effect_numeric=self.min_effect_numeric,
            min_effect_categorical=self.min_effect_categorical,
            max_metric_drop=self.max_metric_drop,
            min_rows=self.min_rows,
            min_labelled_rows=self.min_labelled_rows,
            estimated_degradation=self.estimated_degradation,
            max_estimated_drop=self.max_estimated_drop,
            max_outside_share=self.max_outside_share,
        )
