"""Jobs: training (data to production), monitoring and rollback, one of each per model."""

from collections.abc import Iterator
from typing import Any

from dagster import (
    AssetMaterialization,
    AssetSelection,
    Config,
    JobDefinition,
    OpExecutionContext,
    Out,
    Output,
    define_asset_job,
    job,
    op,
)
from pydantic import Field, field_validator

from mlassets.assets.refusals import MLFLOW_RETRY_POLICY, as_failure, retry_if_transient
from mlassets.catalog import TRAINING_TAG, Model, model_of
from mlassets.ml.bounded import clip
from mlassets.resources import DatasetResource, ModelRegistry

TRAINING_GROUPS = ("data", "features", "training", "evaluation", "registry")


def _selection(m: Model, assets: list, groups: tuple[str, ...]) -> AssetSelection:
    """Model `m`'s assets in `groups` (with their checks), by key: never another model's."""
    mine = {m.group(g) for g in groups}
    keys = [k for a in assets for k in a.keys if a.group_names_by_key.get(k) in mine]
    return AssetSelection.assets(*keys)


def training_job(m: Model, assets: list):
    """Model `m` from data to production. Its runs carry the model's training tag, on which the
    run queue lets one training run per model go at a time (deploy/*/dagster.yaml)."""
    return define_asset_job(
        m.job("training_job"),
        selection=_selection(m, assets, TRAINING_GROUPS),
        tags={TRAINING_TAG: m.ident},
        description=f"{m.name}: validate, engineer, split, tune, evaluate, gate, register and "
        "promote.",
    )


def monitoring_job(m: Model, assets: list):
    return define_asset_job(
        m.job("monitoring_job"),
        selection=_selection(m, assets, ("monitoring",)),
        description=f"{m.name}: read the batches that landed since production was trained and "
        "decide on drift.",
    )


class RollbackConfig(Config):
    """Where `rollback_job` moves production: a chosen version, or by default `previous`.

    `to_version` is typed `Any` for Dagster, whose config has no "int or string": a user writes
    `to_version: 3` as readily as `"3"`, and `str | None` refused the former with a config type
    error. The validator passes a string on and refuses anything else by name."""

    to_version: Any = Field(
        default=None,
        description='The version to roll back to, an integer or a string (3 or "3"); '
        "default: the one the `previous` alias names.",
    )

    @field_validator("to_version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> str | None:
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        raise ValueError(
            f'to_version must be a version number, an integer or a string (3 or "3"), not '
            f"{type(value).__name__} {clip(repr(value), 200)}"
        )


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

    m = model_of(context)
    name = dataset.spec(m).name
    with retry_if_transient(), as_failure():  # a refusal is not retried; a dropped connection is
        moved = rollback(
            registry.client(),
            name,
            to_version=config.to_version,
            run_id=context.run_id,
            log=context.log.warning,
        )
    context.log.info(
        f"production is now {name} version {moved['production']} "
        f"(rolled back from {moved['rolled_back_from']}); previous cleared"
    )
    yield AssetMaterialization(
        asset_key=m.key("production_model"),
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


def rollback_job(m: Model) -> JobDefinition:
    """Move model `m`'s production (and staging) back to `previous`, or to `to_version`.

    Its runs carry the model's training tag, like `training_job`'s: the run queue never starts a
    rollback while a training run of that model is going (or the reverse). Runs that bypass the
    queue (`dagster job execute`) are still kept apart from a promotion by the model's lease."""
    step = op(
        name=m.op("rollback_production"),
        out=Out(dict),
        tags=m.tags,
        retry_policy=MLFLOW_RETRY_POLICY,
    )(rollback_production)

    @job(
        name=m.job("rollback_job"),
        description=f"{m.name}: move production (and staging) back to `previous`, or to "
        "`to_version`.",
        tags={TRAINING_TAG: m.ident},
    )
    def rollback() -> None:
        step()

    return rollback
