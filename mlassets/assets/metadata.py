"""Small helpers that turn frames and dicts into Dagster metadata a person can read."""

from typing import Any

import pandas as pd
from dagster import MetadataValue, TableColumn, TableSchema


def schema_metadata(df: pd.DataFrame) -> TableSchema:
    """A column-by-column schema with dtypes and null counts."""
    nulls = df.isna().sum()
    return TableSchema(
        columns=[
            TableColumn(name=str(c), type=str(t), description=f"{int(nulls[c])} missing")
            for c, t in df.dtypes.items()
        ]
    )


def preview(df: pd.DataFrame, rows: int = 10) -> MetadataValue:
    """The first rows as a markdown table."""
    return MetadataValue.md(df.head(rows).to_markdown(index=False))


def md_table(rows: list[dict[str, Any]]) -> MetadataValue:
    """A list of dicts as a markdown table."""
    return MetadataValue.md(pd.DataFrame(rows).to_markdown(index=False) if rows else "(none)")


def md_image(data_url: str, title: str) -> MetadataValue:
    """A PNG data URL embedded as markdown."""
    return MetadataValue.md(f"![{title}]({data_url})")
