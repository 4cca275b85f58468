"""Reading tables (local or fsspec URL), content fingerprints and the binary target."""

import time
import uuid

import fsspec
import pandas as pd
import pytest

from mlassets.ml import bounded
from mlassets.ml.data import DataError, fingerprint, read_table, target
from mlassets.spec import DatasetSpec

pytestmark = pytest.mark.unit


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


@pytest.mark.parametrize(
    "name",
    ["t.json", "t.xlsx", "t", "s3://b/k.parquet.gz", "t.csv.bz2", "file:///etc/os-release#.csv"],
)
def test_an_unsupported_suffix_raises_data_error(name):
    """The suffix is the path's: a URL's fragment or query (`#.csv`) does not make a CSV."""
    with pytest.raises(DataError, match="unsupported file type") as info:
        read_table(name)
    assert name in str(info.value)
    assert ".csv.gz" in str(info.value), "the message lists what is supported"


def test_supported_suffixes_live_in_one_place():
    from mlassets.ml.data import SUPPORTED_SUFFIXES, file_kind

    assert SUPPORTED_SUFFIXES == (".csv", ".csv.gz", ".parquet", ".pq")
    kinds = {s: file_kind(f"dir/t{s.upper()}") for s in SUPPORTED_SUFFIXES}
    assert kinds == {".csv": "csv", ".csv.gz": "csv", ".parquet": "parquet", ".pq": "parquet"}


def test_a_gzipped_csv_reads_the_same_frame_as_the_csv(tmp_path, raw, spec):
    raw.to_csv(tmp_path / "t.csv", index=False)
    raw.to_csv(tmp_path / "t.csv.gz", index=False)  # pandas gzips by the suffix
    assert (tmp_path / "t.csv.gz").read_bytes()[:2] == b"\x1f\x8b"
    plain = read_table(str(tmp_path / "t.csv"), spec)
    pd.testing.assert_frame_equal(read_table(str(tmp_path / "t.csv.gz"), spec), plain)
    pd.testing.assert_frame_equal(plain, raw, check_dtype=False)


@pytest.mark.parametrize("codec", ["zstd", "gzip", "snappy", "brotli", None])
def test_parquet_reads_whatever_codec_compressed_it(tmp_path, raw, spec, codec):
    import pyarrow.parquet as pq

    path = tmp_path / "t.parquet"
    raw.to_parquet(path, index=False, compression=codec)
    written = pq.ParquetFile(path).metadata.row_group(0).column(0).compression
    assert written == (codec or "uncompressed").upper()
    pd.testing.assert_frame_equal(read_table(str(path), spec), raw)


def test_landing_lists_gzipped_csv_batches(tmp_path, raw):
    from mlassets.ml.landing import list_batches

    for name in ("a.csv.gz", "b.parquet", "c.txt", "d.json.gz"):
        raw.head(5).to_csv(tmp_path / name, index=False)
    assert [b.name for b in list_batches(str(tmp_path))] == ["a.csv.gz", "b.parquet"]


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


def test_many_unparseable_datetimes_are_shown_as_a_few_clipped_values(tmp_path, raw, spec):
    df = raw.head(8).astype({"signup_date": str})
    df["signup_date"] = [f"{i}" + "z" * 5_000 for i in range(8)]
    path = tmp_path / "bad.csv"
    df.to_csv(path, index=False)
    with pytest.raises(DataError) as info:
        read_table(str(path), spec)
    message = str(info.value)
    assert "'signup_date'" in message and "8 value(s)" in message
    assert len(message.encode()) <= bounded.MESSAGE_BYTES
    assert message.count("[cut: 5,001 bytes") == bounded.SAMPLE_SIZE, "a few values, each cut"


def test_a_data_error_is_bounded_whatever_it_is_given(tmp_path):
    assert len(str(DataError("x" * 10**6)).encode()) <= bounded.MESSAGE_BYTES
    long_name = str(tmp_path / ("y" * 200)) + "/" + "z" * 5000 + ".csv"
    with pytest.raises(DataError) as info:
        read_table(long_name)
    assert len(str(info.value).encode()) <= bounded.MESSAGE_BYTES


# -- ceilings: max_rows / max_bytes ------------------------------------------------------------


def with_ceilings(spec: DatasetSpec, **ceilings) -> DatasetSpec:
    return DatasetSpec.model_validate({**spec.model_dump(), **ceilings, "path": spec.path})


def test_a_parquet_over_max_rows_is_refused_from_its_footer_without_reading(tmp_path, spec):
    """3,000,000 rows in a few kB of Parquet (the issue's file ran 66 s before failing): the
    footer says how many rows there are, so the file is refused before any is read."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "big.parquet"
    pq.write_table(pa.table({"x": pa.repeat(0.5, 3_000_000)}), path, compression="zstd")
    assert path.stat().st_size < 1_000_000
    start = time.perf_counter()
    with pytest.raises(DataError) as info:
        read_table(str(path), with_ceilings(spec, max_rows=1_000_000))
    elapsed = time.perf_counter() - start
    message = str(info.value)
    assert elapsed < 0.5, f"refusing took {elapsed:.2f}s: the rows were read"
    assert str(path) in message and "3,000,000 rows" in message and "1,000,000" in message
    assert "`max_rows`" in message and "nothing read" in message
    assert str(spec.path) in message, "the message says which spec to raise it in"


def test_a_parquet_over_max_bytes_is_refused_from_its_footer(tmp_path, raw, spec):
    path = tmp_path / "t.parquet"
    raw.to_parquet(path, index=False)
    with pytest.raises(DataError) as info:
        read_table(str(path), with_ceilings(spec, max_bytes=10_000))
    message = str(info.value)
    assert "bytes uncompressed" in message and "`max_bytes`" in message and "10,000" in message
    assert read_table(str(path), with_ceilings(spec, max_rows=len(raw))).shape == raw.shape


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
def test_a_csv_over_max_rows_stops_reading_and_fails(tmp_path, raw, spec, suffix):
    path = tmp_path / f"t{suffix}"
    raw.to_csv(path, index=False)
    with pytest.raises(DataError) as info:
        read_table(str(path), with_ceilings(spec, max_rows=len(raw) - 1))
    message = str(info.value)
    assert str(path) in message and f"more than {len(raw) - 1:,} rows" in message
    assert "`max_rows`" in message
    assert len(read_table(str(path), with_ceilings(spec, max_rows=len(raw)))) == len(raw)


def test_a_csv_over_max_bytes_stops_reading_and_fails(tmp_path, raw, spec):
    path = tmp_path / "t.csv"
    raw.to_csv(path, index=False)
    size = path.stat().st_size
    with pytest.raises(DataError) as info:
        read_table(str(path), with_ceilings(spec, max_bytes=size - 1))
    message = str(info.value)
    assert f"more than {size - 1:,} bytes" in message and "`max_bytes`" in message
    assert len(read_table(str(path), with_ceilings(spec, max_bytes=size))) == len(raw)


def test_a_gzip_bomb_csv_is_stopped_at_max_bytes_of_text(tmp_path, spec):
    """64 MB of text in ~64 kB of gzip: reading stops once the decompressed text passes the
    ceiling, it does not inflate the whole file first."""
    import gzip

    path = tmp_path / "bomb.csv.gz"
    line = b"1,2,3,4,5,6,7,8\n"
    with gzip.open(path, "wb") as f:
        f.write(b"a,b,c,d,e,f,g,h\n")
        for _ in range(64):
            f.write(line * (1_000_000 // len(line)))
    assert path.stat().st_size < 1_000_000
    start = time.perf_counter()
    with pytest.raises(DataError, match="bytes of CSV text"):
        read_table(str(path), with_ceilings(spec, max_bytes=2_000_000))
    assert time.perf_counter() - start < 1.0


def test_ceilings_default_to_defaults_py(spec):
    from mlassets.ml.data import ceilings
    from mlassets.ml.defaults import MAX_BYTES, MAX_ROWS

    assert ceilings(None) == ceilings(spec) == (MAX_ROWS, MAX_BYTES)
    assert ceilings(with_ceilings(spec, max_rows=5, max_bytes=7)) == (5, 7)


# -- a landed file may not point out of its folder ----------------------------------------------


def test_a_symlink_out_of_its_folder_is_refused_unless_allowed(tmp_path, raw, spec):
    outside = tmp_path / "outside.csv"
    raw.head(10).to_csv(outside, index=False)
    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / "batch.csv").symlink_to(outside)
    (landing / "inner.csv").symlink_to(landing / "batch.csv")  # a link to a link that leaves
    for name in ("batch.csv", "inner.csv"):
        with pytest.raises(DataError, match="allow_external: true") as info:
            read_table(str(landing / name), spec)
        assert str(outside) in str(info.value)
    allowed = with_ceilings(spec, allow_external=True)
    assert len(read_table(str(landing / "batch.csv"), allowed)) == 10
    (landing / "real.csv").write_text(outside.read_text())
    (landing / "alias.csv").symlink_to(landing / "real.csv")  # inside: fine
    assert len(read_table(str(landing / "alias.csv"), spec)) == 10


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
