"""Blocking gates on `evaluation_report` (metric thresholds) and on `staging_model` (it serves)."""

import pandas as pd
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetIn,
    asset_check,
    multi_asset_check,
)

from mlassets.config import GateConfig
from mlassets.ml.evaluation import METRICS
from mlassets.resources import DatasetResource, ModelRegistry

GATE_CHECKS = {f"{m}_gate": m for m in METRICS}
# Every check on evaluation_report whose latest verdict must be a pass before registration.
REGISTRATION_CHECKS: list[str] = list(GATE_CHECKS)


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
