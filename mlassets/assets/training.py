"""Group `training`: the tuned candidate Pipeline."""

import time

import pandas as pd
from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from mlassets.assets.metadata import md_image
from mlassets.config import TrainingConfig
from mlassets.resources import mlflow_run


@asset(
    group_name="training", kinds={"sklearn", "mlflow"}, required_resource_keys={"mlflow", "dataset"}
)
def candidate_model(
    context: AssetExecutionContext,
    config: TrainingConfig,
    train_set: pd.DataFrame,
    validation_set: pd.DataFrame,
) -> MaterializeResult:
    """One sklearn Pipeline (imputation, scaling, one-hot encoding + estimator), tuned on train rows,
    with its decision threshold tuned on the validation set and carried inside the model.

    The value is `FixedThresholdClassifier(FrozenEstimator(pipeline), threshold=t)`: evaluation,
    the registry and `models:/<name>@production` all predict with the tuned threshold. The search
    logs its progress to the run log; parameters, the best CV score, the CV table and the
    threshold go to the Dagster run's MLflow run.
    """
    import mlflow

    from mlassets.ml.data import fingerprint, target
    from mlassets.ml.features import input_frame
    from mlassets.ml.report import data_url, log_threshold_choice
    from mlassets.ml.threshold import choose_threshold
    from mlassets.ml.training import estimator_for, train_candidate

    spec = context.resources.dataset.spec()
    X, y = input_frame(train_set, spec), target(train_set, spec)
    estimator = estimator_for(config.strategy, config.estimator)

    def progress(done: int, total: int, best: float) -> None:
        context.log.info(
            f"search: {done}/{total or '?'} configurations, best {config.scoring} {best:.4f}"
        )

    started = time.perf_counter()
    with mlflow_run(context) as run_id:
        result = train_candidate(
            X,
            y,
            spec.numeric_inputs,
            spec.features.categorical,
            **config.search_settings(),
            progress=progress,
        )
        seconds = time.perf_counter() - started
        choice = choose_threshold(
            result.model,
            input_frame(validation_set, spec),
            target(validation_set, spec),
            metric=config.threshold_metric,
            tune=config.tune_threshold,
            seed=config.seed,
        )
        context.log.info(f"decision threshold {choice.threshold:g}: {choice.reason}")
        mlflow.log_params(
            {
                "strategy": config.strategy,
                "estimator": estimator,
                "cv_folds": config.cv_folds,
                "scoring": config.scoring,
                "seed": config.seed,
                "train_rows": len(X),
                "train_fingerprint": fingerprint(train_set),
                **{f"best_{k}": v for k, v in result.best_params.items()},
            }
        )
        plot = log_threshold_choice(choice)
        mlflow.log_metric("search_seconds", seconds)
        if result.best_score is not None:
            mlflow.log_metric(f"best_cv_{config.scoring}", result.best_score)
        if not result.cv_table.empty:
            mlflow.log_table(result.cv_table.astype(str), artifact_file="cv_results.json")
    best = {
        k: v
        for k, v in result.best_params.items()
        if config.strategy != "fixed" or k in config.params
    }
    threshold_metadata = {
        "decision_threshold": choice.threshold,
        "threshold_metric": choice.metric,
        "threshold_choice": choice.reason,
    }
    if choice.validation is not None:
        threshold_metadata["validation_metrics"] = MetadataValue.md(
            choice.validation.round(4).reset_index().to_markdown(index=False)
        )
    if plot is not None:
        threshold_metadata["threshold_plot"] = md_image(
            data_url(plot), "validation metrics by threshold"
        )
    return MaterializeResult(
        value=choice.model,
        metadata={
            **threshold_metadata,
            "strategy": config.strategy,
            "estimator": estimator,
            "candidates": result.candidates,
            "best_params": MetadataValue.json({k: _jsonable(v) for k, v in best.items()}),
            f"best_cv_{config.scoring}": result.best_score
            if result.best_score is not None
            else "n/a (no search)",
            "search_seconds": round(seconds, 2),
            "cv_results": MetadataValue.md(
                result.cv_table.head(15).to_markdown(index=False)
                if not result.cv_table.empty
                else "(no search)"
            ),
            "mlflow_run_id": run_id,
            "train_rows": len(X),
        },
    )


def _jsonable(v):
    return v if isinstance(v, (int, float, str, bool, type(None))) else str(v)
