"""Small helpers that turn frames and dicts into Dagster metadata a person can read.

Every entry is bounded in bytes (`mlassets.ml.bounded`): a cell, a column name or a sample can be
megabytes of user data, and metadata is written to the event log of every run (three 5 MB
strings in a preview once wrote 120 MB of events, as markdown pads each column to its widest cell).
"""

from typing import Any

import pandas as pd
from dagster import MetadataValue, TableColumn, TableSchema

from mlassets.ml.bounded import METADATA_BYTES, VALUE_BYTES, clip, clip_value, fit


def _cell(value: Any) -> Any:
    """A cell as a table shows it (its `str`), clipped to `VALUE_BYTES` when that is longer."""
    if isinstance(value, str):
        return clip_value(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    text = str(value)
    return value if len(text) <= VALUE_BYTES else clip(text, VALUE_BYTES)


def _cells(df: pd.DataFrame) -> pd.DataFrame:
    """`df` with every column name and every text (or other object) cell clipped."""
    out = df.copy()
    out.columns = [clip_value(str(c)) for c in df.columns]
    for i in range(out.shape[1]):
        column = out.iloc[:, i]
        if not (
            pd.api.types.is_numeric_dtype(column) or pd.api.types.is_datetime64_any_dtype(column)
        ):
            out.isetitem(i, column.astype(object).map(_cell))
    return out


def schema_metadata(df: pd.DataFrame) -> TableSchema:
    """A column-by-column schema with dtypes and null counts, at most `METADATA_BYTES` of it
    (a file with thousands of columns, or very long names, gets its first columns and a count)."""
    nulls = df.isna().sum().to_numpy()
    columns, used = [], 0
    for i, (name, dtype) in enumerate(df.dtypes.items()):
        column = TableColumn(
            name=str(clip_value(str(name))), type=str(dtype), description=f"{int(nulls[i])} missing"
        )
        used += len(column.name.encode()) + len(column.type) + len(column.description or "") + 40
        if used > METADATA_BYTES:
            rest = df.shape[1] - i
            columns.append(
                TableColumn(name=f"… {rest:,} more columns", type="", description="not shown")
            )
            break
        columns.append(column)
    return TableSchema(columns=columns)


def preview(df: pd.DataFrame, rows: int = 10) -> MetadataValue:
    """The first rows as a markdown table; each cell and the whole table clipped."""
    return MetadataValue.md(clip(_cells(df.head(rows)).to_markdown(index=False), METADATA_BYTES))


def md_table(rows: list[dict[str, Any]]) -> MetadataValue:
    """A list of dicts as a markdown table; each cell and the whole table clipped."""
    if not rows:
        return MetadataValue.md("(none)")
    return MetadataValue.md(
        clip(_cells(pd.DataFrame(rows)).to_markdown(index=False), METADATA_BYTES)
    )


def json_list(items: list[Any]) -> MetadataValue:
    """A JSON list of at most `METADATA_BYTES`: the first items that fit, then a note of how many
    more there are (a retraining run can consume thousands of landed batches)."""
    shown, rest = fit(items, METADATA_BYTES - 100)  # room for the brackets and the note
    if rest:
        shown.append(f"… {rest:,} more ({len(items):,} in all)")
    return MetadataValue.json(shown)


def md_image(data_url: str, title: str) -> MetadataValue:
    """A PNG data URL embedded as markdown."""
    return MetadataValue.md(f"![{title}]({data_url})")
