"""Reading tables and identifying them by content."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd

from mlassets.ml import bounded
from mlassets.spec import DatasetSpec

# The one list of file types a source or a landed batch may be (landing.list_batches matches
# names with `endswith`). Parquet carries its own compression (snappy, gzip, zstd, ...).
SUPPORTED_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq")


class DataError(ValueError):
    """A data file that cannot be used; the message names the file, the column and the values.

    The message is clipped to `bounded.MESSAGE_BYTES` whatever it quotes."""

    def __init__(self, message: object) -> None:
        super().__init__(bounded.clip(str(message)))


def file_kind(uri: str) -> str:
    """`csv` or `parquet`, from the name's suffix (a URL's query and fragment do not count:
    `file:///etc/os-release#.csv` is not a CSV file)."""
    from urllib.parse import urlsplit

    path = urlsplit(uri).path if "://" in uri else uri
    name = PurePosixPath(path).name.lower()
    for suffix in SUPPORTED_SUFFIXES:
        if name.endswith(suffix):
            return "csv" if suffix.startswith(".csv") else "parquet"
    shown = bounded.clip_value(PurePosixPath(path).suffix.lower())
    raise DataError(
        f"{uri}: unsupported file type {shown!r} (expected {', '.join(SUPPORTED_SUFFIXES)})"
    )


def ceilings(spec: DatasetSpec | None) -> tuple[int, int]:
    """(max rows, max bytes) of one file: the spec's `max_rows` / `max_bytes`, else the defaults."""
    from mlassets.ml.defaults import MAX_BYTES, MAX_ROWS

    if spec is None:
        return MAX_ROWS, MAX_BYTES
    return spec.max_rows or MAX_ROWS, spec.max_bytes or MAX_BYTES


def read_table(uri: str, spec: DatasetSpec | None = None) -> pd.DataFrame:
    """Read a CSV (.csv, .csv.gz) or Parquet file (local path or fsspec URL); parse the spec's
    datetime columns.

    A file over the spec's `max_rows` / `max_bytes` is refused early: Parquet from its footer,
    before any row is read; CSV as soon as reading passes the ceiling. A datetime value that does
    not parse is an error naming the file, the column and the values, rather than a silent NaT
    that a later check would misreport as a missing value.
    """
    kind = file_kind(uri)
    max_rows, max_bytes = ceilings(spec)
    if spec is not None and not spec.allow_external:
        _refuse_escaping_link(uri, spec)
    try:
        if kind == "parquet":
            _check_parquet_footer(uri, spec, max_rows, max_bytes)
            df = read_parquet(uri)
        else:
            df = _read_csv(uri, spec, max_rows, max_bytes)
    except DataError:
        raise
    except FileNotFoundError as e:
        raise DataError(f"{uri}: file not found") from e
    except Exception as e:  # pandas/pyarrow raise many types for a corrupt file
        raise DataError(f"{uri}: cannot be read as {kind}: {bounded.clip(str(e), 1000)}") from e
    if spec is not None:
        df = _parse_datetimes(df, spec, uri)
    return df


def _too_big(uri: str, spec: DatasetSpec | None, what: str, key: str, ceiling: int) -> DataError:
    where = f"in {spec.path}" if spec is not None and spec.path else "in the dataset spec"
    return DataError(
        f"{uri}: {what}, more than the ceiling of {ceiling:,} (`{key}`); raise `{key}` {where} "
        "to read it"
    )


def _check_parquet_footer(uri: str, spec: DatasetSpec | None, max_rows: int, max_bytes: int):
    """Refuse a Parquet file over the ceilings from its footer alone: a few MB of compressed
    Parquet can expand to millions of rows, which would otherwise be read before any check."""
    import fsspec
    import pyarrow.parquet as pq

    with fsspec.open(uri, "rb") as f:
        meta = pq.ParquetFile(f).metadata
    rows = meta.num_rows
    if rows > max_rows:
        raise _too_big(
            uri, spec, f"{rows:,} rows (from its footer, nothing read)", "max_rows", max_rows
        )
    size = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    if size > max_bytes:
        raise _too_big(
            uri,
            spec,
            f"{size:,} bytes uncompressed (from its footer, nothing read)",
            "max_bytes",
            max_bytes,
        )


class _TooManyBytes(Exception):
    pass


class _Capped(io.RawIOBase):
    """A binary stream that fails once more than `limit` bytes were read from it (after
    decompression): a CSV is refused while it is read, not after it filled the memory."""

    def __init__(self, raw: Any, limit: int) -> None:
        self.raw, self.limit, self.count = raw, limit, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.raw.read(len(buffer))
        self.count += len(data)
        if self.count > self.limit:
            raise _TooManyBytes
        buffer[: len(data)] = data
        return len(data)


def _read_csv(uri: str, spec: DatasetSpec | None, max_rows: int, max_bytes: int) -> pd.DataFrame:
    """Read at most `max_rows` + 1 rows and `max_bytes` + 1 bytes of text (a `.gz` file is
    decompressed on the way); more than either is an error, found without reading the rest."""
    import fsspec

    with fsspec.open(uri, "rb", compression="infer") as f:
        try:
            df = pd.read_csv(io.BufferedReader(_Capped(f, max_bytes)), nrows=max_rows + 1)
        except _TooManyBytes:
            raise _too_big(
                uri,
                spec,
                f"more than {max_bytes:,} bytes of CSV text (read stopped there)",
                "max_bytes",
                max_bytes,
            ) from None
    if len(df) > max_rows:
        raise _too_big(
            uri, spec, f"more than {max_rows:,} rows (read stopped there)", "max_rows", max_rows
        )
    return df


def _refuse_escaping_link(uri: str, spec: DatasetSpec) -> None:
    """A local file that is a symlink out of its own folder (a landed batch pointing at
    /etc/passwd) is refused unless the spec sets `allow_external` (see `DatasetSpec.resolve`)."""
    if "://" in uri:
        return
    path = Path(uri)
    if not path.is_symlink():
        return
    target, folder = path.resolve(), path.parent.resolve()
    if not target.is_relative_to(folder):
        raise DataError(
            f"{uri}: a symlink to {target}, outside {folder}; set `allow_external: true` in "
            f"{spec.path or 'the dataset spec'} to read it"
        )


def read_parquet(source: Any, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """A Parquet file (a path, an fsspec URL or an open binary file) as a DataFrame, with the
    `attrs` pandas stored in it (as `pd.read_parquet` does), holding as little memory as it can.

    `pd.read_parquet` keeps Arrow's copy of the table until the DataFrame is built (about twice
    the frame at the peak) and Arrow's allocator then keeps the freed pages: a 1,000,000-row
    table left ~190 MiB resident where the frame needs ~115 MiB. Here each column's Arrow buffers
    are released as soon as it is converted (`self_destruct`, one block per column), and the
    allocator hands unused memory back to the system. Same values and dtypes as pandas gives.
    """
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    if isinstance(source, str) and "://" in source and not source.startswith("file://"):
        import fsspec

        with fsspec.open(source, "rb") as f:
            return read_parquet(f, columns)
    table = pq.read_table(
        source, columns=list(columns) if columns is not None else None, use_pandas_metadata=True
    )
    meta = table.schema.metadata or {}
    df = table.to_pandas(split_blocks=True, self_destruct=True)
    del table  # self_destruct leaves the table unusable; its memory goes with it
    for i in range(df.shape[1]):
        # a column Arrow handed over without copying is read-only; pandas' frames never are
        values = df.iloc[:, i].to_numpy()
        if isinstance(values, np.ndarray) and not values.flags.writeable:
            df.isetitem(i, df.iloc[:, i].copy())
    if b"PANDAS_ATTRS" in meta:
        df.attrs = json.loads(meta[b"PANDAS_ATTRS"])
    pa.default_memory_pool().release_unused()
    return df


def _parse_datetimes(df: pd.DataFrame, spec: DatasetSpec, uri: str) -> pd.DataFrame:
    for name, col in spec.columns.items():
        if (
            col.type != "datetime"
            or name not in df
            or pd.api.types.is_datetime64_any_dtype(df[name])
        ):
            continue
        parsed = pd.to_datetime(df[name], errors="coerce", format="mixed")
        bad = df[name][parsed.isna() & df[name].notna()]
        if len(bad):
            raise DataError(
                f"{uri}: column {name!r} is declared datetime but {len(bad)} value(s) do not parse, "
                f"e.g. {bounded.sample(bad.drop_duplicates())}"
            )
        df[name] = parsed
    return df


def fingerprint(df: pd.DataFrame) -> str:
    """A content fingerprint: the same rows, columns and dtypes give the same 16-hex-digit id."""
    h = hashlib.sha256()
    h.update("|".join(f"{c}:{t}" for c, t in df.dtypes.items()).encode())
    h.update(np.ascontiguousarray(pd.util.hash_pandas_object(df, index=False).to_numpy()).tobytes())
    return h.hexdigest()[:16]


def target(df: pd.DataFrame, spec: DatasetSpec) -> pd.Series:
    """The binary target: 1 where the label equals the spec's positive value, else 0."""
    return (df[spec.label.column] == spec.label.positive).astype("int64")
