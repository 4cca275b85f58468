"""Reading tables (local or fsspec URL), content fingerprints and the binary target."""

import uuid

import fsspec
import pandas as pd
import pytest

from mlassets.ml.data import DataError, fingerprint, read_table, target
from mlassets.spec import DatasetSpec


def test_read_csv_parses_the_specs_datetime_columns(tmp_path, raw, spec):
    path = tmp_path / "t.csv"
    raw.to_csv(path, index=False)
    df = read_table(str(path), spec)
    assert pd.api.types.is_datetime64_any_dtype(df["timestamp"])
    assert pd.api.types.is_datetime64_any_dtype(df["signup_date"])
    pd.testing.assert_frame_equal(df, raw, check_dtype=False)


def test_read_csv_without_a_spec_leaves_datetimes_as_text(tmp_path, raw):
    path = tmp_path / "t.csv"
    raw.to_csv(path, index=False)
    df = read_table(str(path))
    assert not pd.api.types.is_datetime64_any_dtype(df["timestamp"])
    assert df["timestamp"].iloc[0] == str(raw["timestamp"].iloc[0])


@pytest.mark.parametrize("suffix", [".parquet", ".pq", ".PARQUET"])
def test_read_parquet_round_trips(tmp_path, raw, spec, suffix):
    path = tmp_path / f"t{suffix}"
    raw.to_parquet(path, index=False)
    pd.testing.assert_frame_equal(read_table(str(path), spec), raw)


@pytest.fixture
def memory_url():
    url = f"memory://mlassets-tests/{uuid.uuid4().hex}/t.csv"
    yield url
    fs = fsspec.filesystem("memory")
    if fs.exists(url):
        fs.rm(url)


def test_read_an_fsspec_memory_url(memory_url, raw, spec):
    with fsspec.open(memory_url, "w") as f:
        raw.head(50).to_csv(f, index=False)
    df = read_table(memory_url, spec)
    pd.testing.assert_frame_equal(df, raw.head(50), check_dtype=False)
    assert pd.api.types.is_datetime64_any_dtype(df["timestamp"])


@pytest.mark.parametrize("name", ["t.json", "t.xlsx", "t", "s3://b/k.parquet.gz"])
def test_an_unsupported_suffix_raises_data_error(name):
    with pytest.raises(DataError, match="unsupported file type") as info:
        read_table(name)
    assert name in str(info.value)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_missing_file_raises_data_error_naming_it(tmp_path, suffix):
    path = str(tmp_path / f"missing{suffix}")
    with pytest.raises(DataError) as info:
        read_table(path)
    assert path in str(info.value)
    assert "not found" in str(info.value)


def test_a_corrupt_parquet_file_raises_data_error(tmp_path):
    path = tmp_path / "t.parquet"
    path.write_text("user_id,label\n1,0\n")
    with pytest.raises(DataError, match="cannot be read as parquet") as info:
        read_table(str(path))
    assert str(path) in str(info.value)


def test_an_unparseable_datetime_raises_data_error_naming_file_column_and_values(
    tmp_path, raw, spec
):
    df = raw.head(20).astype({"signup_date": str})
    df.loc[3, "signup_date"] = "not-a-date"
    df.loc[7, "signup_date"] = "2025-13-45"
    path = tmp_path / "bad.csv"
    df.to_csv(path, index=False)
    with pytest.raises(DataError) as info:
        read_table(str(path), spec)
    message = str(info.value)
    assert str(path) in message
    assert "'signup_date'" in message
    assert "not-a-date" in message and "2025-13-45" in message
    assert "2 value(s)" in message


def test_a_missing_datetime_stays_missing_rather_than_failing(tmp_path, raw, spec):
    df = raw.head(10).copy()
    df["timestamp"] = df["timestamp"].astype(object)
    df.loc[2, "timestamp"] = None
    path = tmp_path / "t.csv"
    df.to_csv(path, index=False)
    out = read_table(str(path), spec)
    assert out["timestamp"].isna().tolist() == [i == 2 for i in range(10)]


# -- fingerprint ---------------------------------------------------------------------------------


def test_fingerprint_is_stable_and_ignores_the_index(raw):
    fp = fingerprint(raw)
    assert len(fp) == 16 and int(fp, 16) >= 0
    assert fingerprint(raw.copy()) == fp
    assert fingerprint(raw.set_axis(range(10, 10 + len(raw)))) == fp


def test_fingerprint_changes_with_one_value(raw):
    changed = raw.copy()
    changed.loc[1234, "feature_1"] += 0.001
    assert fingerprint(changed) != fingerprint(raw)


def test_fingerprint_changes_with_row_order_columns_and_dtypes(raw):
    fp = fingerprint(raw)
    assert fingerprint(raw.iloc[::-1]) != fp
    assert fingerprint(raw[list(reversed(raw.columns))]) != fp
    assert fingerprint(raw.astype({"total_purchases": "float64"})) != fp
    assert fingerprint(raw.drop(columns="category")) != fp


def test_fingerprint_survives_a_file_round_trip(tmp_path, raw, spec):
    path = tmp_path / "t.parquet"
    raw.to_parquet(path, index=False)
    assert fingerprint(read_table(str(path), spec)) == fingerprint(raw)


# -- target --------------------------------------------------------------------------------------


def test_target_is_int_zero_one(raw, spec):
    y = target(raw, spec)
    assert y.dtype == "int64"
    assert y.tolist() == raw["label"].tolist()


def test_target_compares_with_a_non_numeric_positive_value():
    spec = DatasetSpec.model_validate(
        {
            "name": "churn",
            "source": "c.csv",
            "label": {"column": "churned", "positive": "yes"},
            "columns": {"x": {"type": "float"}, "churned": {"type": "string"}},
            "features": {"numeric": ["x"]},
        }
    )
    df = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "churned": ["yes", "no", None, "yes"]})
    y = target(df, spec)
    assert y.tolist() == [1, 0, 0, 1]
    assert y.dtype == "int64"


def test_read_parquet_gives_what_pandas_gives_with_attrs_and_chosen_columns(tmp_path, raw):
    from mlassets.ml.data import read_parquet

    df = raw.set_index(raw.index * 3)  # a non-default index, as a split part has
    df.attrs["mlassets"] = {"data": "abc", "split": {"train": "def"}}
    path = tmp_path / "v.parquet"
    df.to_parquet(path)
    expected = pd.read_parquet(path)
    for source in (str(path), path.as_uri()):
        got = read_parquet(source)
        pd.testing.assert_frame_equal(got, expected)
        assert got.attrs == df.attrs
    with open(path, "rb") as f:  # an open file, as the value store passes
        pd.testing.assert_frame_equal(read_parquet(f), expected)
    some = read_parquet(str(path), columns=["category", "label"])
    pd.testing.assert_frame_equal(some, expected[["category", "label"]])
    some.loc[some.index[0], "label"] = 7  # writable, like pandas' own frames
