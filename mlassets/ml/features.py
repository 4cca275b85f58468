"""Derived features, computed from each row's own timestamp (never from "today").

The seed computed `days_since_signup` against the wall clock, so re-running on the same file gave
different features; anchoring on the row's timestamp makes features a pure function of the data.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlassets.spec import DatasetSpec


def days_since_signup(df: pd.DataFrame, spec: DatasetSpec) -> pd.Series:
    """Whole days from `signup_date` to the row's timestamp; never negative."""
    days = (df[spec.timestamp].dt.normalize() - df["signup_date"].dt.normalize()).dt.days
    return days.clip(lower=0).astype("float64")


def purchase_frequency(df: pd.DataFrame, spec: DatasetSpec) -> pd.Series:
    """Purchases per day of account age; a same-day account counts as one day (no division by 0)."""
    days = days_since_signup(df, spec).clip(lower=1)
    return (df["total_purchases"] / days).astype("float64")


DERIVED = {"days_since_signup": days_since_signup, "purchase_frequency": purchase_frequency}


def build_features(df: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """The raw columns plus the spec's derived features; categorical features as strings.

    Categories become strings (missing values stay missing) so the one-hot encoder sees one type
    whether the file stored them as text or as numbers.

    The input is left alone without copying it: the result shares the unchanged columns with
    `df` (a shallow copy; new and converted columns are new arrays), and a column that already
    holds only strings is kept as it is. Both matter at scale: a deep copy of a 5,000,000-row
    table, or a fresh string object per row, costs hundreds of MiB.
    """
    out = df.copy(deep=False)
    for name in spec.features.derived:
        out[name] = DERIVED[name](df, spec)
    for name in spec.features.categorical:
        col = out[name]
        if col.dtype == object and pd.api.types.infer_dtype(col, skipna=True) == "string":
            continue
        out[name] = col.astype("object").where(col.isna(), col.astype(str))
    return out


def input_frame(df: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """The model's input: the spec's feature columns, in the order the Pipeline expects.

    A frame of the columns themselves, not a copy: `df[columns]` copies every selected column
    (~40 MiB per 700,000 training rows, again for each consumer), and the Pipeline only reads.
    """
    return pd.DataFrame({name: df[name] for name in spec.input_columns}, copy=False)


def positive_rate(y: pd.Series | np.ndarray) -> float:
    """The share of positive labels (0.0 for an empty vector)."""
    return float(np.mean(y)) if len(y) else 0.0
