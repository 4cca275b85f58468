"""Jobs: training (data to production) and rollback."""

from dagster import AssetSelection, OpExecutionContext, define_asset_job, job, op

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


@op
def rollback_production(
    context: OpExecutionContext, dataset: DatasetResource, registry: ModelRegistry
) -> dict:
    """Point `production` back at `previous`; the version it leaves becomes `previous`."""
    from mlassets.ml.registry import rollback

    moved = rollback(registry.client(), dataset.spec().name)
    context.log.info(f"production is now version {moved['production']} (was {moved['previous']})")
    return moved


@job(description="Move the production alias back to the previous version.")
def rollback_job():
    rollback_production()
