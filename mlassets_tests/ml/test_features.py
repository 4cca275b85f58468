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

pytestmark = pytest.mark.unit


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


# --- the model's first step coerces each input column to the kind training saw ------------------


def fitted_step(spec, featured):
    from mlassets.ml.features import SpecFeatures

    return SpecFeatures.from_spec(spec).fit(input_frame(featured, spec))


def test_fitting_learns_the_kind_of_each_input_column(spec, featured):
    step = fitted_step(spec, featured)
    assert step.input_kinds_ == {
        "feature_1": "number",
        "feature_2": "number",
        "total_purchases": "number",
        "category": "text",
        "timestamp": "datetime",
        "signup_date": "datetime",
    }


def test_the_training_rows_pass_through_without_a_copy(spec, featured):
    # millions of training rows: a column that already holds its kind must not be copied
    X = input_frame(featured, spec)
    step = fitted_step(spec, featured)
    assert step._coerced(X, step.input_kinds_) is X
    out = step.transform(X)
    for name in [*spec.features.numeric, *spec.features.categorical]:
        assert np.shares_memory(out[name].to_numpy(), X[name].to_numpy()), name


def test_a_frame_of_other_dtypes_gives_the_training_features(spec, featured):
    X = input_frame(featured, spec).head(50).copy()
    X.loc[3, "feature_2"] = np.nan
    X.loc[4, "category"] = np.nan
    step = fitted_step(spec, featured)
    expected = step.transform(X)
    other = X.assign(
        timestamp=X["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S.%f"),  # JSON's ISO text
        signup_date=X["signup_date"].astype("datetime64[s]"),
        feature_1=X["feature_1"].astype(object),  # Python floats
        total_purchases=X["total_purchases"].astype("Int64"),
        category=X["category"].astype("category"),
    )
    other.loc[5, "category"] = None
    expected.loc[5, "category"] = np.nan
    got = step.transform(other)
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    assert got["total_purchases"].dtype == "float64"  # nullable Int64 as float with NaN


@pytest.mark.parametrize(
    ("kind", "values", "expected"),
    [
        ("number", pd.Series([1, 2], dtype="int64"), [1, 2]),
        ("number", pd.Series([1, None], dtype="Int64"), [1.0, np.nan]),
        (
            "number",
            pd.Series(["12", "1e3", None, " 7 "], dtype=object),
            [12.0, 1000.0, np.nan, 7.0],
        ),
        ("number", pd.Series(["3", None], dtype="string"), [3.0, np.nan]),
        ("number", pd.Series(pd.Categorical([2, 5, None])), [2.0, 5.0, np.nan]),
        ("number", pd.Series([True, False]), [True, False]),
        (
            "datetime",
            pd.Series(["2025-03-01T10:15:00", "2025-03-01", None]),
            ["2025-03-01 10:15", "2025-03-01", None],
        ),
        ("datetime", pd.Series(["2025-03-01 10:15:00.250000"]), ["2025-03-01 10:15:00.25"]),
        ("datetime", pd.Series([None, None], dtype=object), [None, None]),
        ("datetime", pd.Series([np.nan, np.nan]), [None, None]),
        ("boolean", pd.Series([True, False]), [True, False]),
        ("boolean", pd.Series(["true", "FALSE", "1", 0], dtype=object), [True, False, True, False]),
        ("boolean", pd.Series([True, None], dtype="boolean"), [1.0, np.nan]),
        ("boolean", pd.Series([1.0, np.nan, 0.0]), [1.0, np.nan, 0.0]),
        ("text", pd.Series([1, "a"], dtype=object), [1, "a"]),
        (None, pd.Series(["anything"]), ["anything"]),
    ],
)
def test_coerce_gives_each_kind(kind, values, expected):
    from mlassets.ml.features import coerce

    got = coerce(values, kind, "x")
    if kind == "datetime":
        expected = pd.to_datetime(pd.Series(expected, dtype=object), format="ISO8601")
        pd.testing.assert_series_equal(got, expected, check_names=False, check_dtype=False)
        assert pd.api.types.is_datetime64_any_dtype(got)
    else:
        expected = pd.Series(expected, dtype=object if kind in ("text", None) else None)
        pd.testing.assert_series_equal(got, expected, check_names=False, check_dtype=False)
    assert got.index.equals(values.index)


def test_coerce_returns_a_column_that_holds_its_kind_as_it_is():
    from mlassets.ml.features import coerce

    for kind, col in [
        ("number", pd.Series([1.5, np.nan])),
        ("number", pd.Series([1, 2])),
        ("datetime", pd.Series(pd.to_datetime(["2025-01-01"]).as_unit("us"))),
        ("boolean", pd.Series([True])),
        ("text", pd.Series(["a"])),
    ]:
        assert coerce(col, kind, "x") is col, kind


@pytest.mark.parametrize(
    ("kind", "values", "message"),
    [
        (
            "number",
            ["1", "lots", "lots", None],
            "column 'x' holds values that are not numbers: ['lots'] (2 rows)",
        ),
        (
            "number",
            pd.to_datetime(["2025-01-01"]),
            "not numbers: [\"Timestamp('2025-01-01 00:00:00')\"] (1 row)",
        ),
        (
            "datetime",
            ["2025-01-01", "yesterday"],
            "column 'x' holds values that are not dates: ['yesterday'] (1 row)",
        ),
        (
            "datetime",
            ["03/01/2025"],
            "not dates: ['03/01/2025']",
        ),  # ISO 8601 only: 1 March or 3 January?
        ("datetime", [1740823200, 1740823201], "not dates: [1740823200, 1740823201]"),
        ("boolean", ["yes", True, 2], "not booleans (true/false, 1/0): ['yes', 2] (2 rows)"),
    ],
)
def test_coerce_refuses_a_value_of_another_kind_naming_column_and_values(kind, values, message):
    from mlassets.ml.features import coerce

    with pytest.raises(ValueError) as raised:
        coerce(pd.Series(values, dtype=object if isinstance(values, list) else None), kind, "x")
    assert message in str(raised.value)


def test_a_refusal_shows_a_few_distinct_values_each_cut_to_size():
    from mlassets.ml.bounded import SAMPLE_SIZE
    from mlassets.ml.features import coerce

    values = pd.Series([f"bad{i % 50}" for i in range(10_000)] + ["x" * 10_000])
    with pytest.raises(ValueError) as raised:
        coerce(values, "number", "amount")
    text = str(raised.value)
    assert text.count("'bad") == SAMPLE_SIZE and "(10,001 rows)" in text and len(text) < 1_000


def test_categories_are_the_same_text_whatever_the_dtype_and_missing_is_nan():
    from mlassets.ml.features import as_categories

    cases = [
        pd.Series([1, 2, 3]),
        pd.Series([1.0, 2.0, 3.0]),
        pd.Series([1, 2, 3], dtype="Int64"),
        pd.Series(pd.Categorical([1, 2, 3])),
        pd.Series(pd.Categorical([1.0, 2.0, 3.0])),
        pd.Series(["1", "2", "3"], dtype="string"),
        pd.Series([1, 2.0, "3"], dtype=object),
    ]
    for col in cases:
        assert as_categories(col).tolist() == ["1", "2", "3"], col.dtype
    # whole numbers as integers while floats hold them exactly (below 2**53)
    assert as_categories(pd.Series([0.5, 12.0, 1e20, True], dtype=object)).tolist() == [
        "0.5",
        "12",
        "1e+20",
        "True",
    ]
    for missing in (None, np.nan, pd.NA):
        out = as_categories(pd.Series(["a", missing], dtype=object))
        assert out[1] is np.nan or (isinstance(out[1], float) and np.isnan(out[1])), missing
    assert as_categories(pd.Series([2.0, np.nan])).tolist()[0] == "2"
    assert np.isnan(as_categories(pd.Series([2, None], dtype="Int64"))[1])


def test_a_step_fitted_before_coercion_transforms_as_it_always_did(spec, featured, tmp_path):
    """A version registered before keeps its answers: its `SpecFeatures` has no `input_kinds_`
    (skops restores the attributes it saved), so it takes columns as they are and writes
    categories the old way (1.0 as "1.0")."""
    import skops.io

    from mlassets.ml.training import SKOPS_TRUSTED_TYPES

    step = fitted_step(spec, featured)
    del step.input_kinds_  # what a step saved before this change holds
    file = tmp_path / "step.skops"
    skops.io.dump(step, file)
    old = skops.io.load(file, trusted=SKOPS_TRUSTED_TYPES)
    assert not hasattr(old, "input_kinds_")
    X = input_frame(featured, spec).head(4).copy()
    X["category"] = [1.0, np.nan, "travel", None]
    out = old.transform(X)
    assert out["category"].tolist()[0] == "1.0" and out["category"].tolist()[3] is None
    X["timestamp"] = X["timestamp"].astype(str)  # text dates: parsed, as before
    pd.testing.assert_series_equal(old.transform(X)["days_since_signup"], out["days_since_signup"])
    new = fitted_step(spec, featured)
    skops.io.dump(new, file)
    assert skops.io.load(file, trusted=SKOPS_TRUSTED_TYPES).input_kinds_ == new.input_kinds_
