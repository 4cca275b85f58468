"""Blocking gates on `evaluation_report` (metric thresholds, champion/challenger, fairness) and on
`staging_model` (it serves).

Every evaluation gate is judged once, by `evaluation_report` with its `EvaluationConfig`, and kept
in its value; a check here only reports that verdict. `registered_model` reads the same verdicts
from the same value, so the UI's checks and the registration decision cannot disagree.
"""

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetIn,
    AssetsDefinition,
    MetadataValue,
    asset_check,
    multi_asset_check,
)

from mlassets.assets.refusals import MLFLOW_RETRY_POLICY, retry_if_transient
from mlassets.catalog import Model, model_of
from mlassets.ml.defaults import EVALUATION
from mlassets.ml.evaluation import METRICS
from mlassets.ml.provenance import Candidate, Rows
from mlassets.ml.records import EvaluationReport, GateVerdict, Staged
from mlassets.resources import DatasetResource, ModelRegistry

GATE_CHECKS = {f"{m}_gate": m for m in METRICS}


def _verdict(evaluation_report: EvaluationReport, name: str) -> GateVerdict:
    """The gate `name` as `evaluation_report` judged it (a report without it fails the check:
    registration refuses it too)."""
    verdict = evaluation_report.gate(name)
    if verdict is None:
        return GateVerdict(
            name=name, passed=False, description=f"evaluation_report holds no verdict for {name}"
        )
    return verdict


def metric_gates(context: AssetCheckExecutionContext, evaluation_report: EvaluationReport):
    """One blocking check per metric threshold; a failure names metric, value and threshold."""
    for name, metric in GATE_CHECKS.items():
        r = _verdict(evaluation_report, name)
        if not r.passed:
            context.log.error(r.description)
        yield AssetCheckResult(
            asset_key=model_of(context).key("evaluation_report"),
            check_name=name,
            passed=r.passed,
            severity=AssetCheckSeverity.ERROR,
            description=r.description,
            metadata={
                "metric": metric,
                "value": _shown(r.value, "n/a"),
                "threshold": _shown(r.threshold),
            },
        )


def beats_baseline(
    context: AssetCheckExecutionContext, evaluation_report: EvaluationReport
) -> AssetCheckResult:
    """The candidate is better than predicting without looking at the rows, by a margin."""
    r = _verdict(evaluation_report, "beats_baseline")
    if not r.passed:
        context.log.error(r.description)
    return AssetCheckResult(
        passed=r.passed,
        severity=AssetCheckSeverity.ERROR,
        description=r.description,
        metadata={
            "metric": _shown(r.metric, "n/a"),
            "value": _shown(r.value, "n/a"),
            "trivial_baseline": _shown(r.baseline, "n/a"),
            "threshold": _shown(r.threshold),
        },
    )


def _shown(value, empty: str = "none"):
    """A metadata value: `value`, or `empty` for None (metadata cannot hold None)."""
    return empty if value is None else value


def beats_production(
    context: AssetCheckExecutionContext, evaluation_report: EvaluationReport
) -> AssetCheckResult:
    """Champion/challenger: a candidate worse than the production model is not registered.

    A challenger that scored worse than production on the same rows is a normal outcome of a
    retrain, a warning: production is kept (`registered_model` records it) and the run ends
    well. Production that could not be scored fails closed, an error."""
    from mlassets.ml.provenance import kept_production

    cc = evaluation_report.champion_challenger
    figures = cc.figures
    passed = _verdict(evaluation_report, "beats_production").passed
    scored = cc.production is not None
    if not passed:
        (context.log.warning if scored else context.log.error)(cc.message)
    interval = cc.interval
    kept = kept_production(evaluation_report)
    return AssetCheckResult(
        passed=passed,
        # warn (not block) only where it decides alone: with another gate failed too, the run
        # fails for that one, and this one says the same as ever
        severity=AssetCheckSeverity.WARN if kept else AssetCheckSeverity.ERROR,
        description=cc.message,
        metadata={
            "metric": cc.primary,
            "value": figures.candidate,
            "threshold": _shown(figures.required),
            "production_version": _shown(cc.production_version),
            "production_value": _shown(figures.baseline),
            "difference": _shown(figures.difference),
            "tolerance": figures.tolerance,
            "bootstrap_low": _shown(interval.low if interval else None, "n/a"),
            "bootstrap_high": _shown(interval.high if interval else None, "n/a"),
        },
    )


def fairness_gate(
    context: AssetCheckExecutionContext, evaluation_report: EvaluationReport
) -> AssetCheckResult:
    """Fairness: a candidate that treats a group measurably worse is not registered."""
    from mlassets.assets.metadata import md_table

    fair = evaluation_report.fairness
    passed = _verdict(evaluation_report, "fairness").passed
    if not passed:
        context.log.error(fair.message)
    return AssetCheckResult(
        passed=passed,
        severity=AssetCheckSeverity.ERROR,
        description=fair.message,
        metadata={
            "value": _shown(fair.worst_equalized_odds(), "n/a"),
            "threshold": _shown(fair.max_equalized_odds),
            "max_demographic_parity": _shown(fair.max_demographic_parity),
            "min_group_size": fair.min_group_size,
            "offending_groups": MetadataValue.json(fair.offending_groups),
            "columns": md_table(
                [
                    {
                        "column": c.column,
                        "demographic_parity_difference": c.demographic_parity_difference,
                        "equalized_odds_difference": c.equalized_odds_difference,
                        "offending_groups": ", ".join(c.offending_groups) or "",
                        "not_gated": ", ".join(
                            [
                                *c.excluded_groups,
                                *(f"{g} ({'/'.join(r)})" for g, r in c.ungated_rates.items()),
                            ]
                        ),
                    }
                    for c in fair.columns
                ]
            ),
        },
    )


def staging_predicts_identically(
    context: AssetCheckExecutionContext,
    staging_model: Staged,
    test_set: Rows,
    candidate_model: Candidate,
    dataset: DatasetResource,
    registry: ModelRegistry,
) -> AssetCheckResult:
    """Serve-time parity: the registry's `staging` model and the trained Pipeline agree row by row.

    Fails, without loading anything, when the candidate given is not the one the staging version
    holds (a partial selection or another run's value)."""
    from mlassets.ml.features import input_frame
    from mlassets.ml.registry import STAGING, alias_version, version_predictions_match

    spec = dataset.spec(model_of(context))
    client = registry.client()
    with retry_if_transient():
        version = alias_version(client, spec.name, STAGING)
    X = input_frame(test_set.frame, spec)
    held = staging_model.candidate
    if held != candidate_model.digest:
        return AssetCheckResult(
            passed=False,
            severity=AssetCheckSeverity.ERROR,
            description=f"staging version {staging_model.version} holds candidate {held}, "
            f"not the candidate_model given ({candidate_model.digest}): materialize the "
            "registry group together with candidate_model",
        )
    staged = staging_model.version
    # by number: a concurrent run may have moved the alias since this run set it
    with retry_if_transient():
        result = version_predictions_match(client, spec.name, staged, X, candidate_model.predict(X))
    moved = "" if version == staged else f" (@staging has since moved to version {version})"
    return AssetCheckResult(
        passed=result["mismatched"] == 0,
        severity=AssetCheckSeverity.ERROR,
        description=(
            f"{result['mismatched']} of {result['rows']} predictions of version {staged}, as "
            f"served from the registry, differ from the candidate's{moved}"
        ),
        metadata={**result, "staged_version": staged, "staging_alias_now": str(version)},
    )


BEATS_PRODUCTION = (
    "The candidate's primary metric (EvaluationConfig.primary_metric, f1) on the test set is at "
    "least production's on the same rows minus EvaluationConfig.tolerance (0.0). Passes, and says "
    "so, when there is no production model; a challenger that scores worse is a warning, and "
    "production is kept (the run ends well); fails when production exists but cannot be scored, "
    "unless EvaluationConfig.allow_unscored_production."
)
BEATS_BASELINE = (
    "The candidate's primary metric on the test set is at least EvaluationConfig.min_lift "
    f"({EVALUATION.min_lift}) above what a trivial predictor scores on the same rows: for F1 "
    "predicting every row "
    "positive, for accuracy the majority class (mlassets.ml.gates.TRIVIAL). A model's spec can "
    "set it under `gates`."
)
FAIRNESS = (
    "For every sensitive column of the spec, the equalized odds difference (largest TPR or FPR "
    "gap between groups) is at most EvaluationConfig.max_equalized_odds (0.1) beyond its "
    "sampling noise (1.96 standard errors of the two rates' difference: a gap within it can be "
    "chance), and the demographic parity difference at most max_demographic_parity (default: "
    "reported, not gated); rates over fewer than min_group_size (30) rows are reported, not gated."
)
STAGING_PARITY = (
    "The version this run put behind @staging loads from the registry through mlflow.pyfunc and "
    "predicts exactly like the in-memory candidate on the test set."
)


def build(m: Model) -> list[AssetsDefinition]:
    """The blocking gates of model `m`: on its `evaluation_report` and its `staging_model`."""
    report = m.key("evaluation_report")
    report_in = {"evaluation_report": AssetIn(report)}
    return [
        multi_asset_check(
            name=m.op("metric_gates"),
            specs=[
                AssetCheckSpec(
                    name,
                    asset=report,
                    blocking=True,
                    description=f"Test-set {metric} is at least EvaluationConfig.min_{metric} "
                    "(judged by evaluation_report).",
                )
                for name, metric in GATE_CHECKS.items()
            ],
            ins=report_in,
            op_tags=m.tags,
        )(metric_gates),
        asset_check(
            asset=report,
            name="beats_baseline",
            blocking=True,
            op_tags=m.tags,
            description=BEATS_BASELINE,
        )(beats_baseline),
        asset_check(
            asset=report,
            name="beats_production",
            blocking=True,
            op_tags=m.tags,
            description=BEATS_PRODUCTION,
        )(beats_production),
        asset_check(
            asset=report, name="fairness", blocking=True, op_tags=m.tags, description=FAIRNESS
        )(fairness_gate),
        asset_check(
            asset=m.key("staging_model"),
            name="staging_predicts_identically",
            blocking=True,
            additional_ins={name: AssetIn(m.key(name)) for name in ("test_set", "candidate_model")},
            retry_policy=MLFLOW_RETRY_POLICY,
            op_tags=m.tags,
            description=STAGING_PARITY,
        )(staging_predicts_identically),
    ]
