"""Blocking gates on `evaluation_report` (metric thresholds, champion/challenger, fairness) and on
`staging_model` (it serves).

The evaluation gates read their verdicts from the `evaluation_report` value, where the asset
computed them with its `EvaluationConfig`; a check only turns a verdict into a result.
"""

import pandas as pd
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetIn,
    MetadataValue,
    asset_check,
    multi_asset_check,
)

from mlassets.config import GateConfig
from mlassets.ml.evaluation import METRICS
from mlassets.resources import DatasetResource, ModelRegistry

GATE_CHECKS = {f"{m}_gate": m for m in METRICS}
# Every check on evaluation_report whose latest verdict must be a pass before registration.
REGISTRATION_CHECKS: list[str] = [*GATE_CHECKS, "beats_production", "fairness"]


@multi_asset_check(
    specs=[
        AssetCheckSpec(
            name,
            asset="evaluation_report",
            blocking=True,
            description=f"Test-set {metric} is at least GateConfig.min_{metric}.",
        )
        for name, metric in GATE_CHECKS.items()
    ],
    ins={"evaluation_report": AssetIn("evaluation_report")},
)
def metric_gates(context: AssetCheckExecutionContext, config: GateConfig, evaluation_report: dict):
    """One blocking check per metric threshold; a failure names metric, value and threshold."""
    from mlassets.ml.evaluation import gate

    results = {r.metric: r for r in gate(evaluation_report["metrics"], config.thresholds())}
    for name, metric in GATE_CHECKS.items():
        r = results[metric]
        if not r.passed:
            context.log.error(r.describe())
        yield AssetCheckResult(
            asset_key="evaluation_report",
            check_name=name,
            passed=r.passed,
            severity=AssetCheckSeverity.ERROR,
            description=r.describe(),
            metadata={
                "metric": metric,
                "value": r.value,
                "threshold": r.threshold if r.threshold is not None else "none",
            },
        )


def _shown(value, empty: str = "none"):
    """A metadata value: `value`, or `empty` for None (metadata cannot hold None)."""
    return empty if value is None else value


@asset_check(
    asset="evaluation_report",
    blocking=True,
    description="The candidate's primary metric (EvaluationConfig.primary_metric, f1) on the test "
    "set is at least production's on the same rows minus EvaluationConfig.tolerance (0.0). "
    "Passes, and says so, when there is no production model.",
)
def beats_production(
    context: AssetCheckExecutionContext, evaluation_report: dict
) -> AssetCheckResult:
    """Champion/challenger: a candidate worse than the production model is not registered."""
    cc = evaluation_report["champion_challenger"]
    figures = cc["figures"]
    if not cc["passed"]:
        context.log.error(cc["message"])
    interval = cc.get("interval") or {}
    return AssetCheckResult(
        passed=bool(cc["passed"]),
        severity=AssetCheckSeverity.ERROR,
        description=cc["message"],
        metadata={
            "metric": cc["primary"],
            "value": figures["candidate"],
            "threshold": _shown(figures["required"]),
            "production_version": _shown(cc["production_version"]),
            "production_value": _shown(figures["baseline"]),
            "difference": _shown(figures["difference"]),
            "tolerance": figures["tolerance"],
            "bootstrap_low": _shown(interval.get("low"), "n/a"),
            "bootstrap_high": _shown(interval.get("high"), "n/a"),
        },
    )


@asset_check(
    asset="evaluation_report",
    name="fairness",
    blocking=True,
    description="For every sensitive column of the spec, the equalized odds difference (largest "
    "TPR or FPR gap between groups) is at most EvaluationConfig.max_equalized_odds (0.1), and the "
    "demographic parity difference at most max_demographic_parity (default: reported, not "
    "gated); rates over fewer than min_group_size (30) rows are reported, not gated.",
)
def fairness_gate(context: AssetCheckExecutionContext, evaluation_report: dict) -> AssetCheckResult:
    """Fairness: a candidate that treats a group measurably worse is not registered."""
    from mlassets.assets.metadata import md_table

    fair = evaluation_report["fairness"]
    if not fair["passed"]:
        context.log.error(fair["message"])
    columns = fair["columns"]
    worst = max(
        (
            c["equalized_odds_difference"]
            for c in columns
            if c["equalized_odds_difference"] is not None
        ),
        default=None,
    )
    return AssetCheckResult(
        passed=bool(fair["passed"]),
        severity=AssetCheckSeverity.ERROR,
        description=fair["message"],
        metadata={
            "value": _shown(worst, "n/a"),
            "threshold": _shown(fair["max_equalized_odds"]),
            "max_demographic_parity": _shown(fair["max_demographic_parity"]),
            "min_group_size": fair["min_group_size"],
            "offending_groups": MetadataValue.json(fair["offending_groups"]),
            "columns": md_table(
                [
                    {
                        "column": c["column"],
                        "demographic_parity_difference": c["demographic_parity_difference"],
                        "equalized_odds_difference": c["equalized_odds_difference"],
                        "offending_groups": ", ".join(c["offending_groups"]) or "",
                        "not_gated": ", ".join(
                            [
                                *c["excluded_groups"],
                                *(f"{g} ({'/'.join(r)})" for g, r in c["ungated_rates"].items()),
                            ]
                        ),
                    }
                    for c in columns
                ]
            ),
        },
    )


@asset_check(
    asset="staging_model",
    blocking=True,
    additional_ins={"test_set": AssetIn("test_set"), "candidate_model": AssetIn("candidate_model")},
    description="models:/<name>@staging loads through mlflow.pyfunc and predicts exactly like the "
    "in-memory candidate on the test set.",
)
def staging_predicts_identically(
    staging_model: dict,
    test_set: pd.DataFrame,
    candidate_model,
    dataset: DatasetResource,
    registry: ModelRegistry,
) -> AssetCheckResult:
    """Serve-time parity: the registry's `staging` model and the trained Pipeline agree row by row."""
    from mlassets.ml.features import input_frame
    from mlassets.ml.registry import STAGING, alias_version, predictions_match

    spec = dataset.spec()
    client = registry.client()
    version = alias_version(client, spec.name, STAGING)
    X = input_frame(test_set, spec)
    result = predictions_match(f"models:/{spec.name}@{STAGING}", X, candidate_model.predict(X))
    passed = result["mismatched"] == 0 and version == str(staging_model["version"])
    return AssetCheckResult(
        passed=passed,
        severity=AssetCheckSeverity.ERROR,
        description=(
            f"{result['mismatched']} of {result['rows']} predictions differ; "
            f"@staging is version {version}, expected {staging_model['version']}"
        ),
        metadata={**result, "staging_version": str(version)},
    )
