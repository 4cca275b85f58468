"""Group `data`: the raw table, as the spec's source holds it."""

import pandas as pd
from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from mlassets.assets.metadata import preview, schema_metadata
from mlassets.resources import DatasetResource


@asset(group_name="data", kinds={"pandas"})
def raw_data(context: AssetExecutionContext, dataset: DatasetResource) -> MaterializeResult:
    """The training table read from the spec's `source` (CSV or Parquet, local or fsspec URL)."""
    from mlassets.ml.data import fingerprint, read_table

    uri = dataset.source_uri()
    df: pd.DataFrame = read_table(uri, dataset.spec())
    fp = fingerprint(df)
    context.log.info(f"read {len(df):,} rows x {df.shape[1]} columns from {uri} ({fp})")
    return MaterializeResult(
        value=df,
        metadata={
            "dagster/row_count": len(df),
            "dagster/column_schema": schema_metadata(df),
            "source": MetadataValue.path(uri),
            "fingerprint": fp,
            "preview": preview(df),
        },
    )
