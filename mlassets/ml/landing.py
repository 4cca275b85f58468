"""The landing folder: new batches arrive as files (CSV or Parquet), one batch per file.

Each batch is judged on its own: a batch that cannot be read, has other columns than the spec's,
or breaks the spec's per-batch rules (`validation.BATCH_CHECKS`) is skipped and reported by name
with the reason, so one bad file never stops monitoring of the others.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass

import pandas as pd

from mlassets.ml.bounded import SAMPLE_SIZE, clip, clip_value, sample
from mlassets.ml.data import SUPPORTED_SUFFIXES, DataError, read_table
from mlassets.spec import DatasetSpec

# Digest of a file whose bytes could not be read: it still lands as a batch (reading it then
# names the error), and once it becomes readable its real digest makes it a new batch.
UNREADABLE = "unreadable"
# Bytes of one skipped batch's reason: a few offending values per broken rule, never the batch.
REASON_BYTES = 1_000
# Verdicts of batches already validated, by (content digest, spec digest): a sensor re-reads
# every batch not yet trained on at each tick that sees something new (see `judge_batches`).
_VERDICTS: OrderedDict[tuple[str, str], str | None] = OrderedDict()
_VERDICTS_MAX = 4_096
_VERDICTS_LOCK = threading.Lock()  # a code server may evaluate sensors on several threads


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
    digest makes a batch's identity independent of its modification time. A landing path that
    exists but is not a folder is an error naming it (else it would look empty forever).
    """
    import fsspec

    if not landing_uri:
        return []
    fs, root = fsspec.core.url_to_fs(landing_uri)
    if not fs.exists(root):
        return []
    if not fs.isdir(root):
        raise DataError(f"landing {landing_uri}: is not a folder (batches land as files in it)")
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
        uri = path if local else fs.unstrip_protocol(path)
        batches.append(Batch(name, uri, int(info.get("size") or 0), _digest(fs, path)))
    return sorted(batches, key=lambda b: b.name)


def _digest(fs, path: str) -> str:
    digest = hashlib.sha256()
    try:
        with fs.open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    except OSError:  # e.g. permission denied: reading the batch will say so, by name
        return UNREADABLE
    return digest.hexdigest()[:16]


def read_batches(
    batches: list[Batch], spec: DatasetSpec, *, check: bool = False
) -> tuple[pd.DataFrame, list[Batch], dict[str, str]]:
    """Read and concatenate batches; a batch that cannot be used is reported by name and skipped.

    Returns (rows of the usable batches with a `_batch` column, the batches used, why each other
    batch was skipped, by name). A batch whose columns are not the spec's is skipped too: mixing
    it in would corrupt the rest. With `check`, each batch must also pass the spec's per-batch
    rules (`judge_batches`) before it joins the others: one batch with text in a numeric column
    would otherwise turn the whole column into text for every statistic computed on it.
    """
    loaded, errors = [], {}
    expected = list(spec.columns)
    for batch in batches:
        try:
            df = read_table(batch.uri, spec)
        except DataError as e:
            errors[batch.name] = clip(str(e), REASON_BYTES)
            continue
        df = with_label_column(df, spec)
        if list(df.columns) != expected:
            missing = [c for c in expected if c not in df.columns]
            extra = [c for c in df.columns if c not in expected]
            errors[batch.name] = clip(
                f"{batch.uri}: columns differ from the spec (missing {sample(missing)}, "
                f"unexpected {sample(extra)})",
                REASON_BYTES,
            )
            continue
        loaded.append((batch, df))
    verdicts = judge_batches(loaded, spec) if check else {}
    frames, read = [], []
    for batch, df in loaded:
        if verdicts.get(batch.name):
            errors[batch.name] = verdicts[batch.name]
            continue
        frames.append(df.assign(_batch=batch.name))
        read.append(batch)
    errors = {b.name: errors[b.name] for b in batches if b.name in errors}  # landing order
    if not frames:
        return pd.DataFrame(columns=[*expected, "_batch"]), read, errors
    return pd.concat(frames, ignore_index=True), read, errors


def with_label_column(df: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """A batch that landed without the label column (the model's inputs only: the label comes
    later, or by file, see `labels`) with that column added, empty, where the spec puts it; any
    other batch as it is. The file itself is never rewritten."""
    label = spec.label.column
    if label in df.columns or list(df.columns) != [c for c in spec.columns if c != label]:
        return df
    numeric = spec.columns[label].type in ("integer", "float", "boolean")
    empty = pd.Series(
        float("nan") if numeric else None, index=df.index, dtype=float if numeric else object
    )
    out = df.copy(deep=False)
    out.insert(list(spec.columns).index(label), label, empty)
    return out


# The per-batch rules that a union of batches can only pass when each batch passes alone: each
# judges rows (or, for `unique`, pairs of rows) of batches that share the spec's columns. For
# these, one validation of many batches together stands for each of them whenever it passes.
# `features_not_empty` is not one (a batch with an empty column passes among full ones): a batch
# with a column entirely missing is always validated alone. Any other rule added to
# `BATCH_CHECKS` makes every batch be validated alone until it is listed here.
UNION_SAFE = frozenset(
    {
        "columns_match_spec",
        "types_match_spec",
        "not_null",
        "unique",
        "values_in_range",
        "finite_values",
        "values_allowed",
    }
)


def judge_batches(
    loaded: list[tuple[Batch, pd.DataFrame]], spec: DatasetSpec
) -> dict[str, str | None]:
    """Each batch's verdict (None: passes; else why not, bounded), by name, judged on its own.

    Validating each batch alone costs about 0.15-0.3 s of Great Expectations per batch whatever
    its size (building the metric graph of ~20 expectations, not reading the rows), so a tick
    with hundreds of batches not yet trained on would take minutes. So: verdicts already known
    for the same content and spec are reused; batches with a column entirely missing are
    validated alone; the others together, and a group that fails is split in halves until the
    failing batches stand alone. A verdict is only ever "passes" because a group holding the
    batch passed (which implies it passes alone: `UNION_SAFE`) or "fails, because..." from the
    batch's own validation, so every reason names what is wrong with that batch itself.
    """
    from mlassets.ml.provenance import spec_digest
    from mlassets.ml.validation import BATCH_CHECKS

    digest = spec_digest(spec)
    groupable = set(BATCH_CHECKS) <= UNION_SAFE | {"features_not_empty"}
    verdicts: dict[str, str | None] = {}
    together, alone = [], []
    for batch, df in loaded:
        known = known_verdict(batch, digest)
        if known is not UNKNOWN:
            verdicts[batch.name] = known
        elif groupable and not _has_empty_column(df, spec):
            together.append((batch, df))
        else:
            alone.append((batch, df))
    for batch, why in [*(_alone(b, df, spec) for b, df in alone), *_bisect(together, spec)]:
        verdicts[batch.name] = why
        remember_verdict(batch, digest, why)
    return verdicts


_UNVALIDATED = "could not be validated"
UNKNOWN = object()


def known_verdict(batch: Batch, rules: str) -> str | None | object:
    """The verdict already reached on `batch`'s content under `rules` (a spec digest), else
    `UNKNOWN`."""
    with _VERDICTS_LOCK:
        return _VERDICTS.get((batch.digest, rules), UNKNOWN)


def remember_verdict(batch: Batch, rules: str, why: str | None) -> None:
    """Keep a verdict on `batch`'s content, unless it may change: an unreadable file, or a
    validation that could not run (an error may pass next time)."""
    if batch.digest == UNREADABLE or (why or "").startswith(_UNVALIDATED):
        return
    with _VERDICTS_LOCK:
        _VERDICTS[(batch.digest, rules)] = why
        while len(_VERDICTS) > _VERDICTS_MAX:
            _VERDICTS.popitem(last=False)


def _has_empty_column(df: pd.DataFrame, spec: DatasetSpec) -> bool:
    """Whether a column other than the label holds no value at all (or the batch no rows)."""
    return any(df[c].isna().all() for c in df.columns if c != spec.label.column)


def _alone(batch: Batch, df: pd.DataFrame, spec: DatasetSpec) -> tuple[Batch, str | None]:
    try:
        return batch, check_batch(df, spec)
    except Exception as e:  # a validation that cannot run on this batch skips it, not the rest
        return batch, clip(f"{_UNVALIDATED}: {type(e).__name__}: {e}", REASON_BYTES)


def _bisect(
    group: list[tuple[Batch, pd.DataFrame]], spec: DatasetSpec
) -> list[tuple[Batch, str | None]]:
    """Verdicts for `group`: one validation when all pass; else halves, then each alone."""
    if len(group) <= 1 or not _passes(group, spec):
        return _split(group, spec)
    return [(b, None) for b, _ in group]


def _split(
    group: list[tuple[Batch, pd.DataFrame]], spec: DatasetSpec
) -> list[tuple[Batch, str | None]]:
    """Verdicts for a `group` known to fail. Halves that pass are done; when both halves fail,
    bad batches are common here and each is validated alone: at most about n + 2 log2(n)
    validations for n batches, never much more than validating each alone."""
    if len(group) <= 1:
        return [_alone(b, df, spec) for b, df in group]
    half = len(group) // 2
    done, failing = [], []
    for part in (group[:half], group[half:]):
        if len(part) > 1 and _passes(part, spec):
            done += [(b, None) for b, _ in part]
        else:
            failing.append(part)
    if len(failing) == 2:
        return done + [_alone(b, df, spec) for part in failing for b, df in part]
    return done + (_split(failing[0], spec) if failing else [])


def _passes(group: list[tuple[Batch, pd.DataFrame]], spec: DatasetSpec) -> bool:
    try:
        return not _failed(pd.concat([df for _, df in group], ignore_index=True), spec)
    except Exception:  # e.g. frames that do not concatenate: judge them apart
        return False


def _failed(df: pd.DataFrame, spec: DatasetSpec) -> list:
    """The failed per-batch outcomes of `df`; the label alone may be missing (see check_batch)."""
    from mlassets.ml.validation import BATCH_CHECKS, validate

    return [
        o
        for o in validate(df, spec, batch=True)
        if o.check in BATCH_CHECKS
        and not o.success
        and not (o.check == "not_null" and o.column == spec.label.column)
    ]


def check_batch(df: pd.DataFrame, spec: DatasetSpec) -> str | None:
    """Why one landed batch breaks the spec's per-batch rules (bounded), or None when it passes.

    The rules are the spec's data-quality checks that judge a batch alone (`BATCH_CHECKS`: types,
    nullability, uniqueness, ranges, finiteness, allowed values, no all-missing feature). The
    label alone may be missing: labels often arrive after the rows, and unlabelled batches still
    show drift.
    """
    failed = _failed(df, spec)
    if not failed:
        return None
    shown = [describe_failure(o) for o in failed[:SAMPLE_SIZE]]
    more = f"; and {len(failed) - SAMPLE_SIZE} more" if len(failed) > SAMPLE_SIZE else ""
    return clip(f"fails {'; '.join(shown)}{more}", REASON_BYTES)


def describe_failure(o) -> str:
    """One failed expectation in a few words: check, column, how many rows, a few values."""
    where = f" on column {clip_value(o.column)!r}" if o.column else ""
    if o.error:
        return f"{o.check}{where}: {clip(str(o.error), 300)}"
    if o.check == "features_not_empty":
        return f"{o.check}{where}: every value is missing"
    if o.unexpected_count is not None:
        return (
            f"{o.check}{where}: {o.unexpected_count:,} row(s), e.g. {sample(_distinct(o.sample))}"
        )
    observed = o.observed.item() if hasattr(o.observed, "item") else o.observed
    return f"{o.check}{where}: observed {clip(repr(clip_value(observed)), 300)}"


def _distinct(values: list) -> list:
    """`values` without repeats, in order (a sample of 'toys', 'toys' shows 'toys' once)."""
    out = []
    for v in values:
        if v not in out:
            out.append(v)
    return out


def describe_skipped(skipped: dict[str, str], size: int = SAMPLE_SIZE) -> str:
    """The skipped batches and why, for a log line or a skip reason: a few shown, the rest
    counted (the full list is in the assets' metadata)."""
    if not skipped:
        return ""
    items = list(skipped.items())
    shown = "; ".join(f"skipped batch {clip_value(n)}: {why}" for n, why in items[:size])
    more = f"; and {len(items) - size} more skipped batch(es)" if len(items) > size else ""
    return shown + more


def skipped_records(skipped: dict[str, str], limit: int | None = None) -> list[dict[str, str]]:
    """The skipped batches as [{batch, reason}] for metadata, cut to `limit` bytes of JSON
    (`bounded.METADATA_BYTES` by default) with a last row saying how many were left out."""
    from mlassets.ml.bounded import METADATA_BYTES, fit

    limit = METADATA_BYTES if limit is None else limit
    rows = [{"batch": clip_value(name), "reason": why} for name, why in skipped.items()]
    shown, rest = fit(rows, limit - 200)
    if rest:
        shown.append({"batch": "…", "reason": f"{rest} more not shown"})
    return shown


def batches_key(batches: list[Batch]) -> str:
    """A stable fingerprint of a set of batches (names and contents), e.g. for a sensor run_key."""
    from mlassets.ml.drift import batches_fingerprint

    return batches_fingerprint((b.name, b.digest) for b in batches)


def not_yet_trained_on(batches: list[Batch], trained: list[dict]) -> list[Batch]:
    """The batches a model has not consumed (`trained`: its stored batch dicts, name + digest)."""
    consumed = {(t["name"], t["digest"]) for t in trained}
    return [b for b in batches if (b.name, b.digest) not in consumed]
