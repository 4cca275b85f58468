"""The landing folder: new batches arrive as files (CSV or Parquet), one batch per file."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

import pandas as pd

from mlassets.ml.data import SUPPORTED_SUFFIXES, DataError, read_table
from mlassets.spec import DatasetSpec


@dataclass(frozen=True)
class Batch:
    """One landed file, identified by name and content (a rewritten file is a new batch)."""

    name: str
    uri: str
    size: int
    digest: str

    def as_dict(self) -> dict:
        return asdict(self)


def list_batches(landing_uri: str | None) -> list[Batch]:
    """Every CSV/Parquet file directly in the landing folder, sorted by name, with content digests.

    Names sort in arrival order when producers use sortable names (timestamps, counters); the
    digest makes a batch's identity independent of its modification time.
    """
    import fsspec

    if not landing_uri:
        return []
    fs, root = fsspec.core.url_to_fs(landing_uri)
    if not fs.exists(root):
        return []
    protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    local = "file" in protocols or "local" in protocols
    batches = []
    for info in fs.ls(root, detail=True):
        path = info["name"]
        name = path.rstrip("/").rsplit("/", 1)[-1]
        if (
            info.get("type") != "file"
            or name.startswith(".")
            or not name.lower().endswith(SUPPORTED_SUFFIXES)
        ):
            continue
        digest = hashlib.sha256()
        with fs.open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        uri = path if local else fs.unstrip_protocol(path)
        batches.append(Batch(name, uri, int(info.get("size") or 0), digest.hexdigest()[:16]))
    return sorted(batches, key=lambda b: b.name)


def read_batches(
    batches: list[Batch], spec: DatasetSpec
) -> tuple[pd.DataFrame, list[Batch], dict[str, str]]:
    """Read and concatenate batches; a batch that cannot be read is reported by name and skipped.

    Returns (rows of the readable batches with a `_batch` column, the batches read, errors by name).
    A batch whose columns are not the spec's is unreadable too: mixing it in would corrupt the rest.
    """
    frames, read, errors = [], [], {}
    expected = list(spec.columns)
    for batch in batches:
        try:
            df = read_table(batch.uri, spec)
        except DataError as e:
            errors[batch.name] = str(e)
            continue
        if list(df.columns) != expected:
            missing = [c for c in expected if c not in df.columns]
            extra = [c for c in df.columns if c not in expected]
            errors[batch.name] = (
                f"{batch.uri}: columns differ from the spec (missing {missing}, unexpected {extra})"
            )
            continue
        frames.append(df.assign(_batch=batch.name))
        read.append(batch)
    if not frames:
        return pd.DataFrame(columns=[*expected, "_batch"]), read, errors
    return pd.concat(frames, ignore_index=True), read, errors


def batches_key(batches: list[Batch]) -> str:
    """A stable fingerprint of a set of batches (names and contents), e.g. for a sensor run_key."""
    from mlassets.ml.drift import batches_fingerprint

    return batches_fingerprint((b.name, b.digest) for b in batches)


def not_yet_trained_on(batches: list[Batch], trained: list[dict]) -> list[Batch]:
    """The batches a model has not consumed (`trained`: its stored batch dicts, name + digest)."""
    consumed = {(t["name"], t["digest"]) for t in trained}
    return [b for b in batches if (b.name, b.digest) not in consumed]
