"""Group `data`: the raw table, as the spec's source holds it (plus any landed batches asked for)."""

from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from mlassets.assets.factory import model_asset
from mlassets.assets.metadata import json_list, preview, schema_metadata
from mlassets.assets.refusals import as_failure
from mlassets.catalog import Model, Problem, model_of
from mlassets.checks.data_quality import data_quality_specs, quality_results
from mlassets.resources import DatasetResource


class RawDataConfig(Config):
    """Which landed batches to append to the source (set by `drift_sensor` when it retrains)."""

    batches: list[str] = Field(
        default_factory=list,
        description="File names in the spec's landing folder to train on besides the source.",
    )
    consumed: list[str] = Field(
        default_factory=list,
        description="Landed batches this run accounts for (trained on or left out of the window); "
        "monitoring no longer counts them as recent. Defaults to `batches`.",
    )


def _rows_per_class(run_config: dict, m: Model) -> int:
    """Rows each label class needs for this run's own split and search (its `splits` and
    `candidate_model` config), so `label_classes` fails before any training would. Read from
    the run config as given: a value Dagster resolves later (e.g. `{env: ...}`) keeps its default."""
    from mlassets.ml.defaults import SPLIT, TRAINING
    from mlassets.ml.validation import min_rows_per_class

    ops = (run_config or {}).get("ops") or {}

    def given(op: str, defaults):
        config = (ops.get(m.op(op)) or {}).get("config") or {}
        return defaults.model_copy(
            update={
                k: v
                for k, v in config.items()
                if k in ("test_fraction", "validation_fraction", "cv_folds", "strategy")
                and isinstance(v, type(getattr(defaults, k)))
            }
        )

    return min_rows_per_class(given("splits", SPLIT), given("candidate_model", TRAINING))


def raw_data(
    context: AssetExecutionContext, config: RawDataConfig, dataset: DatasetResource
):  # no return annotation: with check_specs Dagster would read `MaterializeResult` as Nothing
    """The training table read from the spec's `source` (CSV or Parquet, local or fsspec URL).

    With `batches` set, those landed files are appended: a retraining run learns from the
    original data plus what arrived since. The spec's Great Expectations suite runs in the same
    step (the blocking data-quality checks) and its verdict travels with the value, so nothing
    downstream can be built from rows that failed it, whatever a later run selects.
    """
    from mlassets.ml.bounded import clip
    from mlassets.ml.data import DataError
    from mlassets.ml.steps import read_raw, validate_raw
    from mlassets.spec import SpecError

    m = model_of(context)
    try:  # a source outside the spec's folder, too big, unreadable: one bounded line, no trace
        spec = dataset.spec(m)
        uri = dataset.source_uri(m)
        with as_failure():
            raw = read_raw(
                uri,
                dataset.landing_uri(m),
                spec,
                config.batches,
                config.consumed,
                dataset.labels_uri(m),
            )
    except (DataError, SpecError) as e:
        raise Failure(description=str(e)) from None
    df, used, consumed, labels = raw.rows, raw.batches, raw.consumed, raw.labels
    label_files = labels.files if labels else []
    quality = validate_raw(
        df,
        spec,
        [b.as_dict() for b in consumed],
        _rows_per_class(context.run.run_config, m),
        label_files,
        raw.source_rows,
    )
    fp, failed = quality.rows.provenance["data"], quality.failed
    for o in quality.outcomes:
        if not o.success:
            context.log.error(clip(f"{o.check}: {o.describe()}"))
    context.log.info(
        clip(
            f"read {len(df):,} rows x {df.shape[1]} columns from {uri}"
            + (f" and {len(used)} landed batch(es)" if used else "")
            + (f" ({labels.summary()})" if labels else "")
            + f" ({fp}); data quality: "
            + (f"FAILED {failed}" if failed else "passed")
        )
    )
    return MaterializeResult(
        value=quality.rows,
        check_results=quality_results(quality.outcomes, m.key("raw_data")),
        metadata={
            "dagster/row_count": len(df),
            "dagster/column_schema": schema_metadata(df),
            "source": MetadataValue.path(clip(uri)),
            "batches": json_list([b.as_dict() for b in used]),
            "consumed_batches": json_list([b.as_dict() for b in consumed]),
            "label_files": json_list(label_files),
            "fingerprint": fp,
            "data_quality": "passed" if not failed else f"failed: {', '.join(failed)}",
            "preview": preview(df),
        },
    )


def build(m: Model) -> list[AssetsDefinition]:
    """Group `data` of model `m`."""
    quality = data_quality_specs(m.key("raw_data"))
    return [model_asset(m, raw_data, "data", {"pandas"}, check_specs=quality)]


def dataset_spec(context: AssetExecutionContext) -> None:
    """Fails with why its spec file cannot be served (the error is in its description too)."""
    error = context.assets_def.metadata_by_key[context.asset_key]["error"]
    raise Failure(description=str(getattr(error, "value", error)), allow_retries=False)


def build_problem(problem: Problem) -> AssetsDefinition:
    """A spec file of the folder that cannot be served, shown where its model would be: the asset
    `<file>/dataset_spec`, whose description is the loader's error and which fails with it."""
    return asset(
        name="dataset_spec",
        key_prefix=[problem.ident],
        group_name="spec_errors",
        description=f"This spec cannot be served: {problem.error}",
        metadata={"spec_file": MetadataValue.path(str(problem.path)), "error": problem.error},
        op_tags={"mlassets/spec_file": str(problem.path)},
    )(dataset_spec)
