"""Run configuration for the asset families (settable from the launchpad or `-c run_config.yaml`).

Each class is the core's settings model (`mlassets.ml.defaults`, `drift.DriftThresholds`) with
Dagster's `Config` added: types, choices, defaults and descriptions have one home, the launchpad
refuses a choice outside a `Literal` by name, and every drift setting is reachable from run config.
"""

from typing import Any

from dagster import Config
from pydantic import Field

from mlassets.ml.defaults import (
    EVALUATION,
    METRICS,
    EvaluationSettings,
    SplitSettings,
    TrainingSettings,
)
from mlassets.ml.drift import DriftThresholds


class SplitConfig(Config, SplitSettings):
    """How `features` is split into train, validation and test sets."""


class TrainingConfig(Config, TrainingSettings):
    """The estimator and the search that tunes it. The default is `fast` (gradient boosting tuned
    by successive halving: the seed grid's F1 and PR AUC, or within noise of them, in a few per
    cent of its time, see benchmarks/RESULTS.md); `seed_grid` is the seed's grid search."""


def _unset(name: str) -> Any:
    """A gate limit in run config: unset means the model's own (its spec's `gates`), else the
    default; the description and the default it names are the core's."""
    core = EvaluationSettings.model_fields[name]
    return Field(
        default=None,
        description=f"{core.description} Unset: the spec's `gates`, else "
        + ("not gated." if core.default is None else f"{core.default}."),
    )


class EvaluationConfig(Config, EvaluationSettings):
    """What `evaluation_report` measures and the limits its blocking checks enforce.

    Every gate (the metric minimums, the trivial baseline, champion/challenger, fairness) is
    judged here, once, and recorded in the report; the checks on `evaluation_report` report
    those verdicts and `registered_model` registers only what that same evaluation passed.

    A gate limit left unset (None) here takes the model's own (its spec's `gates`), else the
    default (`mlassets.ml.gates.resolve`): set one here to change it for one run.
    """

    min_accuracy: float | None = _unset("min_accuracy")
    min_precision: float | None = _unset("min_precision")
    min_recall: float | None = _unset("min_recall")
    min_f1: float | None = _unset("min_f1")
    min_roc_auc: float | None = _unset("min_roc_auc")
    min_pr_auc: float | None = _unset("min_pr_auc")
    min_lift: float | None = _unset("min_lift")
    tolerance: float | None = _unset("tolerance")
    max_demographic_parity: float | None = _unset("max_demographic_parity")
    max_equalized_odds: float | None = _unset("max_equalized_odds")

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


class DriftConfig(Config, DriftThresholds):
    """Thresholds of the retrain decision (shared by `drift_report` and `drift_sensor`).

    Defaults follow the seed (alpha 0.05, a 0.05 metric drop, 10,000 recent rows) plus a
    multiple-testing correction, effect-size minimums and a 0.05 drop of the performance
    estimated before labels; see `mlassets.ml.drift.DriftThresholds` for the reason behind each.
    """

    def thresholds(self) -> DriftThresholds:
        """The pure-core thresholds these settings describe."""
        return DriftThresholds(**self.model_dump())
