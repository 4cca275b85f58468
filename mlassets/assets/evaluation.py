"""Group `evaluation`: the candidate's report on the held-out test set, against production."""

import pandas as pd
from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from mlassets.assets.metadata import md_image
from mlassets.config import EvaluationConfig
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


@asset(
    group_name="evaluation",
    kinds={"sklearn", "mlflow"},
    required_resource_keys={"mlflow", "dataset", "registry"},
)
def evaluation_report(
    context: AssetExecutionContext,
    config: EvaluationConfig,
    candidate_model,
    test_set: pd.DataFrame,
) -> MaterializeResult:
    """The candidate on the test set: metrics at 0.5 and at its tuned threshold, the production
    model scored on the same rows (champion/challenger), fairness over the spec's sensitive
    columns, permutation importance, calibration, and the pictures.

    The checks `beats_production` and `fairness` read their verdicts from this value. Figures,
    `evaluation_report.json` and a self-contained `evaluation.html` go to the Dagster run's MLflow
    run, the one `registered_model` logs the model version from.
    """
    from mlassets.ml.data import target
    from mlassets.ml.features import input_frame
    from mlassets.ml.report import build_evaluation, data_url, load_baseline, log_report

    spec = context.resources.dataset.spec()
    X, y = input_frame(test_set, spec), target(test_set, spec)
    baseline = load_baseline(context.resources.registry.client(), spec.name)
    evaluation = build_evaluation(
        candidate_model, X, y, test_set[spec.sensitive], baseline, **config.model_dump()
    )
    report = evaluation.report
    with mlflow_run(context) as run_id:
        report["mlflow_run_id"] = run_id
        artifacts = log_report(report, evaluation.images)
    cc, fair = report["champion_challenger"], report["fairness"]
    context.log.info(
        "test metrics at threshold "
        + f"{report['threshold']['value']:g}: "
        + ", ".join(f"{k}={v:.4f}" for k, v in report["metrics"].items())
    )
    (context.log.info if cc["passed"] else context.log.warning)(cc["message"])
    (context.log.info if fair["passed"] else context.log.warning)(fair["message"])
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
    calibration = report["calibration"] or {}
    return MaterializeResult(
        value=report,
        metadata={
            **{k: float(v) for k, v in report["metrics"].items()},
            "decision_threshold": report["threshold"]["value"],
            "metrics": MetadataValue.md(evaluation.markdown["metrics"]),
            "confusion_matrix": MetadataValue.json(report["confusion_matrix"]),
            "test_rows": report["rows"],
            "production_version": cc["production_version"] or "none",
            "champion_challenger": cc["message"],
            "fairness": MetadataValue.md(evaluation.markdown["fairness"]),
            "importance": MetadataValue.md(evaluation.markdown.get("importance", "(off)")),
            "brier_score": calibration.get("brier", "n/a (no probabilities)"),
            "expected_calibration_error": calibration.get("expected_calibration_error", "n/a"),
            **pictures,
            "mlflow_run_id": run_id,
            "mlflow_artifacts": MetadataValue.json(artifacts),
        },
    )
