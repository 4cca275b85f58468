"""Group `training`: the tuned candidate Pipeline."""

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
from mlassets.config import TrainingConfig
from mlassets.ml.provenance import Candidate, Rows
from mlassets.resources import mlflow_run


@transient_only
def candidate_model(
    context: AssetExecutionContext,
    config: TrainingConfig,
    train_set: Rows,
    validation_set: Rows,
) -> MaterializeResult:
    """One sklearn Pipeline (imputation, scaling, one-hot encoding + estimator), tuned on train rows,
    with its decision threshold tuned on the validation set and carried inside the model.

    The value is a `Candidate`: the model `FixedThresholdClassifier(FrozenEstimator(pipeline),
    threshold=t)` (evaluation, the registry and `models:/<name>@production` all predict with the
    tuned threshold) and its provenance: its digest, the train rows' fingerprint, the split and
    the data-quality verdict it was made from (`mlassets.ml.steps.train_and_log`). The search
    logs its progress to the run log; parameters, the best CV score, the CV table and the
    threshold go to the Dagster run's MLflow run.
    """
    from mlassets.ml.report import data_url
    from mlassets.ml.steps import train_and_log

    spec = context.resources.dataset.spec(model_of(context))

    def progress(done: int, total: int, best: float) -> None:
        context.log.info(
            f"search: {done}/{total or '?'} configurations, best {config.scoring} {best:.4f}"
        )

    with mlflow_run(context) as run_id, as_failure():
        trained = train_and_log(
            context.resources.registry.client(),
            run_id,
            train_set,
            validation_set,
            spec,
            config,
            progress=progress,
            dagster_run_id=context.run_id,
        )
    candidate: Candidate = trained.candidate
    result, choice = trained.search, trained.choice
    if result.placement is not None:
        context.log.info(result.placement.summary())
    context.log.info(f"decision threshold {choice.threshold:g}: {choice.reason}")
    context.log.info(
        f"candidate {candidate.digest} trained on rows {candidate.provenance['trained_on']}"
    )
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
    if trained.threshold_plot is not None:
        threshold_metadata["threshold_plot"] = md_image(
            data_url(trained.threshold_plot), "validation metrics by threshold"
        )
    return MaterializeResult(
        value=candidate,
        metadata={
            "candidate_digest": candidate.digest,
            "train_fingerprint": str(candidate.provenance["trained_on"]),
            "data_fingerprint": str(candidate.provenance["data"]),
            **threshold_metadata,
            "strategy": config.strategy,
            "estimator": trained.estimator,
            "candidates": result.candidates,
            "best_params": MetadataValue.json({k: _jsonable(v) for k, v in best.items()}),
            f"best_cv_{config.scoring}": result.best_score
            if result.best_score is not None
            else "n/a (no search)",
            "search_seconds": round(trained.seconds, 2),
            "search_placement": result.placement.summary() if result.placement else "no search",
            "cv_results": MetadataValue.md(
                result.cv_table.head(15).to_markdown(index=False)
                if not result.cv_table.empty
                else "(no search)"
            ),
            "mlflow_run_id": run_id,
            "train_rows": len(train_set),
        },
    )


def _jsonable(v):
    return v if isinstance(v, (int, float, str, bool, type(None))) else str(v)


def build(m: Model) -> list[AssetsDefinition]:
    """Group `training` of model `m`."""
    training_inputs = ("train_set", "validation_set")
    return [
        model_asset(
            m,
            candidate_model,
            "training",
            {"sklearn", "mlflow"},
            ins=training_inputs,
            logs_to_mlflow=True,
            retry_policy=MLFLOW_RETRY_POLICY,
        )
    ]
