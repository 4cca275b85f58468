"""Group `data`: the raw table, as the spec's source holds it (plus any landed batches asked for)."""

import pandas as pd
from dagster import AssetExecutionContext, Config, Failure, MaterializeResult, MetadataValue, asset
from pydantic import Field

from mlassets.assets.metadata import preview, schema_metadata
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


@asset(group_name="data", kinds={"pandas"})
def raw_data(
    context: AssetExecutionContext, config: RawDataConfig, dataset: DatasetResource
) -> MaterializeResult:
    """The training table read from the spec's `source` (CSV or Parquet, local or fsspec URL).

    With `batches` set, those landed files are appended: a retraining run learns from the
    original data plus what arrived since.
    """
    from mlassets.ml.data import fingerprint, read_table
    from mlassets.ml.landing import list_batches, read_batches

    spec = dataset.spec()
    uri = dataset.source_uri()
    df: pd.DataFrame = read_table(uri, spec)
    used, consumed = [], []
    if config.batches or config.consumed:
        landed = {b.name: b for b in list_batches(dataset.landing_uri())}
        wanted = list(dict.fromkeys([*config.batches, *config.consumed]))
        missing = [n for n in wanted if n not in landed]
        if missing:
            raise Failure(f"batches not found in {dataset.landing_uri()}: {missing}")
        consumed = [landed[n] for n in wanted]
        extra, used, errors = read_batches([landed[n] for n in config.batches], spec)
        if errors:
            raise Failure(f"unreadable batches: {errors}")
        if used:
            df = pd.concat([df, extra.drop(columns="_batch")], ignore_index=True)
    fp = fingerprint(df)
    context.log.info(
        f"read {len(df):,} rows x {df.shape[1]} columns from {uri}"
        + (f" and {len(used)} landed batch(es)" if used else "")
        + f" ({fp})"
    )
    return MaterializeResult(
        value=df,
        metadata={
            "dagster/row_count": len(df),
            "dagster/column_schema": schema_metadata(df),
            "source": MetadataValue.path(uri),
            "batches": MetadataValue.json([b.as_dict() for b in used]),
            "consumed_batches": MetadataValue.json([b.as_dict() for b in consumed]),
            "fingerprint": fp,
            "preview": preview(df),
        },
    )
