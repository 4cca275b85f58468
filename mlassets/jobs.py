"""Jobs: training (data to production), monitoring and rollback."""

from collections.abc import Iterator

from dagster import (
    AssetMaterialization,
    AssetSelection,
    Config,
    OpExecutionContext,
    Out,
    Output,
    define_asset_job,
    job,
    op,
)
from pydantic import Field

from mlassets.assets.refusals import MLFLOW_RETRY_POLICY, as_failure, retry_if_transient
from mlassets.resources import DatasetResource, ModelRegistry

monitoring_job = define_asset_job(
    "monitoring_job",
    selection=AssetSelection.groups("monitoring"),
    description="Read the batches that landed since production was trained and decide on drift.",
)

training_job = define_asset_job(
    "training_job",
    selection=AssetSelection.groups("data", "features", "training", "evaluation", "registry"),
    description="Validate, engineer, split, tune, evaluate, gate, register and promote.",
)


class RollbackConfig(Config):
    """Where `rollback_job` moves production: a chosen version, or by default `previous`."""

    to_version: str | None = Field(
        default=None,
        description="The version to roll back to; default: the one the `previous` alias names.",
    )


@op(out=Out(dict), retry_policy=MLFLOW_RETRY_POLICY)
def rollback_production(
    context: OpExecutionContext,
    config: RollbackConfig,
    dataset: DatasetResource,
    registry: ModelRegistry,
) -> Iterator[AssetMaterialization | Output]:
    """Move `production` and `staging` to the target and record it on `production_model`.

    The materialization keeps the UI's `production_model` truthful after a rollback; a refusal
    fails the run with the registry's message and moves nothing.
    """
    from mlassets.ml.registry import PRODUCTION, rollback

    name = dataset.spec().name
    with retry_if_transient(), as_failure():  # a refusal is not retried; a dropped connection is
        moved = rollback(
            registry.client(), name, to_version=config.to_version, run_id=context.run_id
        )
    context.log.info(
        f"production is now {name} version {moved['production']} "
        f"(rolled back from {moved['rolled_back_from']}); previous cleared"
    )
    yield AssetMaterialization(
        asset_key="production_model",
        description=f"rolled back from version {moved['rolled_back_from']} by rollback_job",
        metadata={
            "model_uri": f"models:/{name}@{PRODUCTION}",
            "model_version": moved["production"],
            "rolled_back_from": moved["rolled_back_from"],
            "staging_version": moved["staging"],
            "previous_version": "none",
        },
    )
    yield Output({"name": name, **moved})


@job(description="Move production (and staging) back to `previous`, or to `to_version`.")
def rollback_job() -> None:
    rollback_production()
