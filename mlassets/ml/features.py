"""Derived features, computed from each row's own timestamp (never from "today").

The seed computed `days_since_signup` against the wall clock, so re-running on the same file gave
different features; anchoring on the row's timestamp makes features a pure function of the data.

`SpecFeatures` is the first step of every registered Pipeline: the model takes the spec's raw
columns and computes its derived features itself, so `mlflow models serve`, `scored_batches` and
training all see the same features (no consumer re-implements them: no train/serve skew).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from mlassets.spec import DERIVED_FEATURES, DatasetSpec


def _datetimes(df: pd.DataFrame, column: str) -> pd.Series:
    """`df[column]` as datetimes; text (a served JSON or CSV row) is parsed, and a value that is
    not a date is refused naming the column and a few values."""
    col = df[column]
    if pd.api.types.is_datetime64_any_dtype(col):
        return col
    parsed = pd.to_datetime(col, errors="coerce")
    bad = col[parsed.isna() & col.notna()]
    if len(bad):
        from mlassets.ml.bounded import sample

        raise ValueError(f"column {column!r} holds values that are not dates: {sample(bad)}")
    return parsed


def days_since_signup(df: pd.DataFrame, timestamp: str) -> pd.Series:
    """Whole days from `signup_date` to the row's timestamp; never negative."""
    days = _datetimes(df, timestamp).dt.normalize() - _datetimes(df, "signup_date").dt.normalize()
    return days.dt.days.clip(lower=0).astype("float64")


def purchase_frequency(df: pd.DataFrame, timestamp: str) -> pd.Series:
    """Purchases per day of account age; a same-day account counts as one day (no division by 0)."""
    days = days_since_signup(df, timestamp).clip(lower=1)
    return (pd.to_numeric(df["total_purchases"]) / days).astype("float64")


DERIVED = {"days_since_signup": days_since_signup, "purchase_frequency": purchase_frequency}
assert set(DERIVED) == set(DERIVED_FEATURES)


def as_categories(col: pd.Series) -> pd.Series:
    """A categorical column as strings (missing values stay missing), so the one-hot encoder sees
    one type whether the file stored categories as text or as numbers. A column that already
    holds only strings is returned as it is: a fresh string object per row costs hundreds of MiB
    at scale."""
    if col.dtype == object and pd.api.types.infer_dtype(col, skipna=True) == "string":
        return col
    return col.astype("object").where(col.isna(), col.astype(str))


def build_features(df: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """The raw columns plus the spec's derived features; categorical features as strings.

    The same functions as the model's `SpecFeatures` step. The input is left alone without
    copying it: the result shares the unchanged columns with `df` (a shallow copy; new and
    converted columns are new arrays); a deep copy of a 5,000,000-row table costs hundreds of MiB.
    """
    out = df.copy(deep=False)
    for name in spec.features.derived:
        out[name] = DERIVED[name](df, spec.timestamp)
    for name in spec.features.categorical:
        out[name] = as_categories(out[name])
    return out


class SpecFeatures(TransformerMixin, BaseEstimator):
    """Raw rows of the spec's schema in, the model's features out: numeric, derived, categorical.

    Configured from the spec with plain names (`from_spec`), so skops saves it without code and
    the registered model carries its own feature engineering. Derived features depend on each
    row alone, so fitting learns nothing but the input columns; columns beyond them (an id, the
    label, a batch name) are ignored by name, and a missing one is refused naming it.
    """

    def __init__(
        self,
        numeric: list[str] | None = None,
        categorical: list[str] | None = None,
        derived: list[str] | None = None,
        timestamp: str | None = None,
    ) -> None:
        self.numeric = numeric
        self.categorical = categorical
        self.derived = derived
        self.timestamp = timestamp

    @classmethod
    def from_spec(cls, spec: DatasetSpec) -> SpecFeatures:
        f = spec.features
        return cls(list(f.numeric), list(f.categorical), list(f.derived), spec.timestamp)

    def required_columns(self) -> list[str]:
        """The raw columns this step reads (a spec's `model_inputs`, in first-use order)."""
        needed = [*(self.numeric or []), *(self.categorical or [])]
        for name in self.derived or []:
            needed += [self.timestamp if n == "timestamp" else n for n in DERIVED_FEATURES[name]]
        return list(dict.fromkeys(needed))

    def _require(self, X: Any) -> pd.DataFrame:
        if not isinstance(X, pd.DataFrame):
            raise TypeError(
                f"the model takes a table with named columns {self.required_columns()}, "
                f"not {type(X).__name__}"
            )
        missing = [c for c in self.required_columns() if c not in X.columns]
        if missing:
            raise ValueError(f"the rows lack the model's input column(s) {missing}")
        return X

    def fit(self, X: pd.DataFrame, y: Any = None) -> SpecFeatures:
        self._require(X)
        self.feature_names_in_ = np.asarray(self.required_columns(), dtype=object)
        self.n_features_in_ = len(self.feature_names_in_)
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        df = self._require(X)
        out = {name: df[name] for name in self.numeric or []}
        for name in self.derived or []:
            out[name] = DERIVED[name](df, self.timestamp)
        for name in self.categorical or []:
            out[name] = as_categories(df[name])
        return pd.DataFrame(out, index=df.index, copy=False)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        names = [*(self.numeric or []), *(self.derived or []), *(self.categorical or [])]
        return np.asarray(names, dtype=object)


def takes_raw_rows(model: Any) -> bool:
    """Whether `model` (an mlassets Pipeline, thresholded or not) starts with `SpecFeatures`."""
    from mlassets.ml.threshold import base_model

    steps = getattr(base_model(model), "steps", None) or [(None, None)]
    return isinstance(steps[0][1], SpecFeatures)


def for_raw_rows(model: Any, spec: DatasetSpec) -> Any:
    """`model` able to take raw rows: as it is, or, for a version registered before models
    carried their features (it reads the derived columns), behind this spec's `SpecFeatures`,
    so a candidate is still compared with, and monitoring still scores, such a production."""
    if model is None or takes_raw_rows(model):
        return model
    from sklearn.pipeline import Pipeline

    features = SpecFeatures.from_spec(spec)
    features.feature_names_in_ = np.asarray(features.required_columns(), dtype=object)
    features.n_features_in_ = len(features.feature_names_in_)
    return Pipeline([("features", features), ("model", model)])


def input_frame(df: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """The model's input: the spec's raw input columns (`spec.model_inputs`), as the registered
    model's signature names them; the model derives its features from them.

    A frame of the columns themselves, not a copy: `df[columns]` copies every selected column
    (~40 MiB per 700,000 training rows, again for each consumer), and the Pipeline only reads.
    """
    return pd.DataFrame({name: df[name] for name in spec.model_inputs}, copy=False)


def positive_rate(y: pd.Series | np.ndarray) -> float:
    """The share of positive labels (0.0 for an empty vector)."""
    return float(np.mean(y)) if len(y) else 0.0
