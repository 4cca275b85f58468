"""Group `evaluation`: the candidate's report on the held-out test set."""

import pandas as pd
from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from mlassets.assets.metadata import md_image, md_table
from mlassets.resources import mlflow_run


@asset(
    group_name="evaluation",
    kinds={"sklearn", "mlflow"},
    required_resource_keys={"mlflow", "dataset"},
)
def evaluation_report(
    context: AssetExecutionContext,
    candidate_model,
    test_set: pd.DataFrame,
) -> MaterializeResult:
    """Accuracy, precision, recall, F1, ROC AUC, PR AUC and the confusion matrix on the test set.

    The same figures go onto the MLflow run as `test_<metric>`.
    """
    import mlflow

    from mlassets.ml.data import target
    from mlassets.ml.evaluation import confusion_and_roc_figure, evaluate, png_data_url
    from mlassets.ml.features import input_frame

    spec = context.resources.dataset.spec()
    X, y = input_frame(test_set, spec), target(test_set, spec)
    report = evaluate(candidate_model, X, y)
    with mlflow_run(context) as run_id:
        mlflow.log_metrics({f"test_{k}": v for k, v in report["metrics"].items()})
        mlflow.log_metrics({f"test_{k}": v for k, v in report["confusion_matrix"].items()})
        mlflow.log_dict(report, "evaluation_report.json")
    report["mlflow_run_id"] = run_id
    context.log.info(
        "test metrics: " + ", ".join(f"{k}={v:.4f}" for k, v in report["metrics"].items())
    )
    return MaterializeResult(
        value=report,
        metadata={
            **{k: float(v) for k, v in report["metrics"].items()},
            "metrics": md_table(
                [{"metric": k, "value": round(v, 4)} for k, v in report["metrics"].items()]
            ),
            "confusion_matrix": MetadataValue.json(report["confusion_matrix"]),
            "test_rows": report["rows"],
            "plots": md_image(
                png_data_url(confusion_and_roc_figure(candidate_model, X, y)), "test set"
            ),
            "mlflow_run_id": run_id,
        },
    )
