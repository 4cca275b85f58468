"""Derived features come from each row's own timestamp; categories become strings."""

import numpy as np
import pandas as pd
import pytest

from mlassets.ml.features import (
    build_features,
    days_since_signup,
    input_frame,
    positive_rate,
    purchase_frequency,
)


def rows(timestamps, signups, purchases, categories=None) -> pd.DataFrame:
    n = len(timestamps)
    return pd.DataFrame(
        {
            "user_id": np.arange(1, n + 1),
            "timestamp": pd.to_datetime(timestamps),
            "feature_1": np.linspace(0, 100, n),
            "feature_2": np.ones(n),
            "signup_date": pd.to_datetime(signups),
            "total_purchases": purchases,
            "category": categories if categories is not None else ["grocery"] * n,
            "label": [0] * n,
        }
    )


def test_days_since_signup_counts_days_to_the_rows_own_timestamp(spec):
    # Timestamps from 2001: computing against "today" would give thousands of days.
    df = rows(
        ["2001-03-11 23:59:00", "2001-01-01 00:00:01", "2001-02-01 12:00:00"],
        ["2001-03-01", "2000-01-01", "2001-02-01"],
        [5, 10, 0],
    )
    assert days_since_signup(df, spec.timestamp).tolist() == [10.0, 366.0, 0.0]


def test_derived_features_do_not_depend_on_the_clock(spec, raw):
    first = build_features(raw, spec)
    later = build_features(raw.copy(), spec)
    pd.testing.assert_frame_equal(first, later)
    expected = (raw["timestamp"].dt.normalize() - raw["signup_date"]).dt.days.astype(float)
    assert first["days_since_signup"].tolist() == expected.tolist()
    # the synthetic data starts in 2025 and covers 180 days; accounts are at most a few years old
    assert first["days_since_signup"].max() < 365 * 10


def test_the_same_row_gets_the_same_features_wherever_it_appears(spec, raw):
    whole = build_features(raw, spec)
    alone = build_features(raw.iloc[[17]], spec)
    derived = ["days_since_signup", "purchase_frequency"]
    pd.testing.assert_frame_equal(alone[derived], whole.iloc[[17]][derived])


def test_purchase_frequency_never_divides_by_zero(spec):
    df = rows(
        ["2024-05-05 08:00", "2024-05-05 23:00", "2024-05-01 00:00", "2024-05-11 00:00"],
        ["2024-05-05", "2024-05-05", "2024-05-03", "2024-05-01"],  # same day x2, future, 10 days
        [3, 0, 4, 20],
    )
    freq = purchase_frequency(df, spec.timestamp)
    assert np.isfinite(freq).all()
    assert freq.tolist() == [3.0, 0.0, 4.0, 2.0]
    assert days_since_signup(df, spec.timestamp).tolist() == [0.0, 0.0, 0.0, 10.0]


def test_build_features_adds_the_derived_columns_and_leaves_the_input_alone(spec, raw):
    before = raw.copy()
    out = build_features(raw, spec)
    pd.testing.assert_frame_equal(raw, before)
    assert list(out.columns) == [*raw.columns, "days_since_signup", "purchase_frequency"]
    assert out["days_since_signup"].dtype == "float64"
    assert out["purchase_frequency"].dtype == "float64"
    assert (out["purchase_frequency"] >= 0).all()


def test_categorical_columns_become_strings_with_missing_values_kept(spec):
    df = rows(
        ["2024-01-02"] * 5,
        ["2024-01-01"] * 5,
        [1] * 5,
        categories=[3, "travel", None, np.nan, 7],
    )
    out = build_features(df, spec)
    values = out["category"].tolist()
    assert values[0] == "3" and values[1] == "travel" and values[4] == "7"
    assert out["category"].isna().tolist() == [False, False, True, True, False]
    assert all(isinstance(v, str) for v in out["category"].dropna())


def test_integer_categories_are_strings_without_a_decimal_point(spec):
    df = rows(["2024-01-02"] * 3, ["2024-01-01"] * 3, [1] * 3, categories=[1, 2, 3])
    assert build_features(df, spec)["category"].tolist() == ["1", "2", "3"]
    # the result is a shallow copy: converting a column must not write through to the input
    assert df["category"].tolist() == [1, 2, 3]


def test_a_pandas_categorical_column_becomes_strings_with_nan_kept(spec):
    cats = pd.Categorical(["grocery", None, "travel"])
    df = rows(["2024-01-02"] * 3, ["2024-01-01"] * 3, [1] * 3, categories=cats)
    out = build_features(df, spec)["category"]
    assert out.iloc[0] == "grocery" and out.iloc[2] == "travel"
    assert pd.isna(out.iloc[1])


def test_input_frame_selects_the_model_inputs_in_order(spec, featured):
    X = input_frame(featured, spec)
    # the raw columns, in the spec's order: the model derives its features itself
    assert (
        list(X.columns)
        == spec.model_inputs
        == [
            "timestamp",
            "feature_1",
            "feature_2",
            "signup_date",
            "total_purchases",
            "category",
        ]
    )
    assert "label" not in X and "user_id" not in X and len(X) == len(featured)


@pytest.mark.parametrize(
    ("y", "expected"), [([0, 1, 1, 0], 0.5), (np.array([1, 1, 1]), 1.0), ([], 0.0)]
)
def test_positive_rate(y, expected):
    assert positive_rate(y) == expected


def test_input_frame_shares_the_columns_instead_of_copying_them(spec, featured):
    # each consumer of a 700,000-row train_set would otherwise hold a second copy of its inputs
    X = input_frame(featured, spec)
    for name in spec.model_inputs:
        assert np.shares_memory(X[name].to_numpy(), featured[name].to_numpy()), name
    assert X.index.equals(featured.index)
    pd.testing.assert_frame_equal(X, featured[spec.model_inputs])
