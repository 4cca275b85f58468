"""Group `evaluation`: the candidate's report on the held-out test set, against production."""

from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    MaterializeResult,
    MetadataValue,
)

from mlassets.assets.factory import model_asset
from mlassets.assets.metadata import md_image
from mlassets.assets.refusals import (
    MLFLOW_RETRY_POLICY,
    as_failure,
    transient_only,
)
from mlassets.catalog import Model, model_of
from mlassets.config import EvaluationConfig
from mlassets.ml.provenance import Candidate, Rows
from mlassets.ml.records import EstimateOnTest, EvaluationReport
from mlassets.resources import mlflow_run

# Metadata entry for each picture of the report (absent pictures are skipped).
PICTURES = {
    "roc_curve": "ROC curve (default and tuned threshold marked)",
    "pr_curve": "precision-recall curve (default and tuned threshold marked)",
    "confusion_matrices": "confusion matrices at the default and the tuned threshold",
    "reliability_curve": "reliability curve",
    "permutation_importance": "permutation importance",
    "candidate_vs_production": "candidate vs production",
}


@transient_only
def evaluation_report(
    context: AssetExecutionContext,
    config: EvaluationConfig,
    candidate_model: Candidate,
    test_set: Rows,
) -> MaterializeResult:
    """The candidate on the test set: metrics at 0.5 and at its tuned threshold, the production
    model scored on the same rows (champion/challenger), fairness over the spec's sensitive
    columns, permutation importance, calibration, and the pictures.

    Every gate is judged here, once, and kept in the value with the digest of the candidate judged
    and the fingerprint of the test rows: the checks report these verdicts and `registered_model`
    registers only the candidate this evaluation judged and passed. Refuses a candidate trained on
    another split than this `test_set` (a stale candidate). Figures, `evaluation_report.json`
    and a self-contained `evaluation.html` go to the Dagster run's MLflow run, the one
    `registered_model` logs the model version from.
    """
    from mlassets.ml.report import data_url
    from mlassets.ml.steps import evaluate_and_log

    spec = context.resources.dataset.spec(model_of(context))
    with mlflow_run(context) as run_id, as_failure():
        evaluation = evaluate_and_log(
            context.resources.registry.client(),
            run_id,
            candidate_model,
            test_set,
            spec,
            config.report_settings(spec),
            dagster_run_id=context.run_id,
        )
    report = evaluation.report
    advice = gate_advice(report, spec, model_of(context).op("evaluation_report"))
    if advice:  # one short block a person can act on, before the checks report each gate
        context.log.error(advice)
    cc, fair, failed = report.champion_challenger, report.fairness, report.failed
    context.log.info(
        f"test metrics at threshold {report.threshold.value:g}: "
        + ", ".join(f"{k}={v:.4f}" for k, v in report.metrics.items())
    )
    (context.log.info if cc.passed else context.log.warning)(cc.message)
    (context.log.info if fair.passed else context.log.warning)(fair.message)
    pictures = {
        key: md_image(data_url(evaluation.images[key]), title)
        for key, title in PICTURES.items()
        if key in evaluation.images
    }
    groups = [k for k in evaluation.images if k.startswith("fairness_")]
    if groups:
        pictures["group_rates"] = MetadataValue.md(
            "\n\n".join(
                f"![{k.removeprefix('fairness_')}]({data_url(evaluation.images[k])})"
                for k in groups
            )
        )
    calibration = report.calibration
    return MaterializeResult(
        value=report,
        metadata={
            **{k: float(v) for k, v in report.metrics.items()},
            "decision_threshold": report.threshold.value,
            "metrics": MetadataValue.md(evaluation.markdown["metrics"]),
            "confusion_matrix": MetadataValue.json(report.confusion_matrix),
            "test_rows": report.rows,
            "gates": "all passed" if not failed else f"FAILED: {', '.join(failed)}",
            **({"gate_advice": MetadataValue.md(f"```\n{advice}\n```")} if advice else {}),
            "gate_limits": MetadataValue.json(
                {k: v.model_dump(mode="json") for k, v in report.limits.items()}
            ),
            "candidate_digest": candidate_model.digest,
            "production_version": cc.production_version or "none",
            "champion_challenger": cc.message,
            "fairness": MetadataValue.md(evaluation.markdown["fairness"]),
            "importance": MetadataValue.md(evaluation.markdown.get("importance", "(off)")),
            "brier_score": calibration.brier if calibration else "n/a (no probabilities)",
            "expected_calibration_error": (
                calibration.expected_calibration_error if calibration else "n/a"
            ),
            # what monitoring will estimate before labels, checked here against labels
            **_estimation_metadata(report.estimation),
            **pictures,
            "mlflow_run_id": run_id,
            "mlflow_artifacts": MetadataValue.json(report.artifacts),
        },
    )


def gate_advice(report: EvaluationReport, spec, op: str) -> str | None:
    """`gates.advice` for this model: its spec file and its evaluation step's name."""
    from mlassets.ml.gates import advice

    return advice(report, str(spec.path or "the dataset spec"), op)


def _estimation_metadata(estimation: EstimateOnTest | None) -> dict:
    """The test rows' F1 estimated from calibrated probabilities (beside the realized one)."""
    if not estimation:
        return {}
    f1 = estimation.metrics["f1"]
    return {
        "estimated_f1": round(f1.estimate, 4),
        "estimated_f1_interval": f"[{f1.low:.4f}, {f1.high:.4f}] (95 %)",
        "calibration": estimation.calibration,
        "calibrated_brier_score": estimation.calibrated_brier,
    }


def build(m: Model) -> list[AssetsDefinition]:
    """Group `evaluation` of model `m` (its gates are in `mlassets.checks.gates`)."""
    return [
        model_asset(
            m,
            evaluation_report,
            "evaluation",
            {"sklearn", "mlflow"},
            ins=("candidate_model", "test_set"),
            logs_to_mlflow=True,
            retry_policy=MLFLOW_RETRY_POLICY,
        )
    ]
