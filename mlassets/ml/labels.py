"""Labels that arrive after their rows: files of (id, label) joined to the landed rows by id.

In production the rows a model scores land first and their labels weeks later (a chargeback, a
cancellation), usually as a separate file keyed by the row's id. A spec's `labels` folder takes
such files (CSV or Parquet, two columns: the spec's `id` and its label column). Each file is
validated on its own with the spec's rules for those two columns and skipped by name when it
breaks one; the others are joined to the landed rows in memory (a landed batch is never
rewritten). What does not join cleanly is reported, never silently dropped or duplicated:
- unmatched: a label whose id is on no recent row (already trained on, or not landed yet);
- duplicate: an id labelled more than once with the same value (used once);
- conflicting: an id given different labels (by two files, or by a file and its own row): the
  row counts as unlabelled until one source is corrected;
- ambiguous: an id on more than one recent row (the label could belong to either): not joined.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlassets.ml.bounded import clip, clip_value, sample
from mlassets.ml.landing import (
    REASON_BYTES,
    UNKNOWN,
    Batch,
    describe_failure,
    known_verdict,
    list_batches,
    remember_verdict,
)
from mlassets.spec import DatasetSpec

FILE_COLUMN = "_label_file"
# how a label file is named beside the batches where both count (a sensor's cursor, a run_key)
PREFIX = "labels/"


@dataclass
class LabelFiles:
    """The label files of a folder: the valid ones' rows (`id`, label, `_label_file`), which
    files those are, and why each other file was skipped, by name."""

    files: list[Batch]
    rows: pd.DataFrame
    errors: dict[str, str] = field(default_factory=dict)


@dataclass
class LabelJoin:
    """What joining label files to the recent rows did, in figures and a few ids each."""

    files: list[dict[str, Any]] = field(default_factory=list)  # name, digest, rows
    skipped: dict[str, str] = field(default_factory=dict)
    label_rows: int = 0
    joined: int = 0  # rows that took their label from a file
    agreed: int = 0  # rows whose own label a file repeats
    unmatched: int = 0
    unmatched_ids: list[Any] = field(default_factory=list)
    duplicates: int = 0
    duplicate_ids: list[Any] = field(default_factory=list)
    conflicts: int = 0
    conflict_examples: list[str] = field(default_factory=list)
    ambiguous: int = 0
    ambiguous_ids: list[Any] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """One line: what joined, and every kind of label that did not, with a few ids."""
        if not self.files and not self.skipped:
            return "no label files"
        parts = [
            f"{self.joined:,} recent row(s) labelled from {len(self.files)} label file(s) "
            f"({self.label_rows:,} labels)"
        ]
        if self.agreed:
            parts.append(f"{self.agreed:,} repeat their row's own label")
        if self.unmatched:
            parts.append(
                f"{self.unmatched:,} id(s) match no recent row (already trained on, or not "
                f"landed yet), e.g. {self.unmatched_ids}"
            )
        if self.duplicates:
            parts.append(
                f"{self.duplicates:,} id(s) labelled twice alike, used once, e.g. "
                f"{self.duplicate_ids}"
            )
        if self.conflicts:
            parts.append(
                f"{self.conflicts:,} id(s) with conflicting labels left unlabelled, e.g. "
                f"{'; '.join(self.conflict_examples)}"
            )
        if self.ambiguous:
            parts.append(
                f"{self.ambiguous:,} id(s) on more than one recent row not joined, e.g. "
                f"{self.ambiguous_ids}"
            )
        if self.skipped:
            shown = "; ".join(f"{n}: {why}" for n, why in list(self.skipped.items())[:3])
            parts.append(f"{len(self.skipped)} label file(s) skipped: {shown}")
        return clip("; ".join(parts))


def label_spec(spec: DatasetSpec) -> DatasetSpec:
    """The spec's rules for a label file: its id column and its label column, both required
    (a label file row without an id or a label says nothing), types, ranges and allowed values
    as the spec declares them. Uniqueness is the join's to report, not a reason to refuse."""
    from mlassets.spec import FeatureSpec

    columns = {
        spec.id: spec.columns[spec.id].model_copy(update={"nullable": False, "unique": False}),
        spec.label.column: spec.columns[spec.label.column].model_copy(update={"nullable": False}),
    }
    return spec.model_copy(
        update={
            "columns": columns,
            "id": None,
            "timestamp": None,
            "sensitive": [],
            "features": FeatureSpec(),
            "landing": None,
            "labels": None,
        }
    )


def read_labels(labels_uri: str | None, spec: DatasetSpec) -> LabelFiles:
    """Every label file of the folder, each checked on its own; a file that cannot be read, has
    other columns than the id and the label, or breaks a rule is skipped by name with why."""
    from mlassets.ml.provenance import spec_digest

    empty = pd.DataFrame(columns=[spec.id, spec.label.column, FILE_COLUMN])
    if not labels_uri or spec.id is None:
        return LabelFiles([], empty)
    rules = label_spec(spec)
    digest = "labels:" + spec_digest(rules)
    files, frames, errors = [], [], {}
    for f in list_batches(labels_uri):
        df, why = _read_one(f, spec, rules, digest)
        if why:
            errors[f.name] = why
            continue
        files.append(f)
        frames.append(df.assign(**{FILE_COLUMN: f.name}))
    rows = pd.concat(frames, ignore_index=True) if frames else empty
    return LabelFiles(files, rows, errors)


def _read_one(
    f: Batch, spec: DatasetSpec, rules: DatasetSpec, digest: str
) -> tuple[pd.DataFrame | None, str | None]:
    """One label file's rows in (id, label) order, or why it cannot be used (bounded)."""
    from mlassets.ml.data import DataError, read_table
    from mlassets.ml.validation import BATCH_CHECKS, validate

    wanted = list(rules.columns)
    try:
        df = read_table(f.uri, spec)
    except DataError as e:
        return None, clip(str(e), REASON_BYTES)
    if sorted(df.columns) != sorted(wanted):
        missing = [c for c in wanted if c not in df.columns]
        extra = [c for c in df.columns if c not in wanted]
        return None, clip(
            f"{f.uri}: a label file holds the columns {wanted} (any order): missing "
            f"{sample(missing)}, unexpected {sample(extra)}",
            REASON_BYTES,
        )
    df = df[wanted]
    why = known_verdict(f, digest)
    if why is UNKNOWN:
        try:
            failed = [
                o
                for o in validate(df, rules, batch=True)
                if o.check in BATCH_CHECKS and not o.success
            ]
            why = (
                clip(
                    f"{f.uri}: fails {'; '.join(describe_failure(o) for o in failed[:5])}",
                    REASON_BYTES,
                )
                if failed
                else None
            )
        except Exception as e:  # a validation that cannot run on this file skips it, not the rest
            why = clip(f"could not be validated: {type(e).__name__}: {e}", REASON_BYTES)
        remember_verdict(f, digest, why)
    return (None, why) if why else (df, None)


def _keys(values: pd.Series, kind: str) -> pd.Series:
    """Ids as comparable keys: a CSV's 17 and a Parquet file's 17 are one id."""
    if kind in ("integer", "float"):
        return pd.to_numeric(values, errors="coerce")
    if kind == "datetime":
        return pd.to_datetime(values, errors="coerce")
    return values.astype("string")


def _values(values: pd.Series, kind: str) -> pd.Series:
    """Labels as comparable values (numbers as numbers whichever file they came from)."""
    return pd.to_numeric(values, errors="coerce") if kind in ("integer", "float") else values


def join_labels(
    rows: pd.DataFrame, labels: LabelFiles, spec: DatasetSpec
) -> tuple[pd.DataFrame, LabelJoin]:
    """`rows` (recent rows, the spec's columns) with the label files' labels joined by id, and
    what the join did (`LabelJoin`). Rows keep their order and count; only the label column of a
    copy changes: filled where a file gives the only label, emptied where sources conflict."""
    label, key = spec.label.column, spec.id
    report = LabelJoin(
        files=[{"name": f.name, "digest": f.digest, "rows": 0} for f in labels.files],
        skipped=dict(labels.errors),
        label_rows=len(labels.rows),
    )
    if key is None or not len(labels.rows):
        return rows, report
    per_file = labels.rows[FILE_COLUMN].value_counts()
    for f in report.files:
        f["rows"] = int(per_file.get(f["name"], 0))
    id_kind, label_kind = spec.columns[key].type, spec.columns[label].type
    given = pd.DataFrame(
        {
            "k": _keys(labels.rows[key], id_kind),
            "v": _values(labels.rows[label], label_kind),
            "file": labels.rows[FILE_COLUMN],
        }
    )
    counts = given.groupby("k", sort=False)["v"].agg(["size", "nunique"])
    contested = counts.index[counts["nunique"] > 1]
    twice = counts.index[(counts["size"] > 1) & (counts["nunique"] == 1)]
    report.duplicates, report.duplicate_ids = len(twice), sample(twice)
    usable = given.drop_duplicates("k").set_index("k")["v"]
    usable = usable[~usable.index.isin(contested)]

    if not len(rows):
        report.unmatched, report.unmatched_ids = len(counts), sample(counts.index)
        return rows, report
    row_keys = _keys(rows[key], id_kind)
    repeated = row_keys[row_keys.duplicated(keep=False)]
    ambiguous = set(repeated.dropna())
    report.ambiguous, report.ambiguous_ids = len(ambiguous), sample(sorted(ambiguous, key=str))
    present = set(row_keys.dropna())
    unmatched = [k for k in counts.index if k not in present]
    report.unmatched, report.unmatched_ids = len(unmatched), sample(unmatched)

    from_file = row_keys.map(usable).where(~row_keys.isin(ambiguous))
    own = _values(rows[label], label_kind)
    has_own, has_file = own.notna().to_numpy(), from_file.notna().to_numpy()
    both = has_own & has_file
    same = np.zeros(len(rows), dtype=bool)
    same[both] = own.to_numpy()[both] == from_file.to_numpy()[both]
    differ = both & ~same
    fill = ~has_own & has_file
    unusable = differ | row_keys.isin(contested).to_numpy()
    report.joined, report.agreed = int(fill.sum()), int(same.sum())
    report.conflicts = int(len(contested) + differ.sum())
    report.conflict_examples = _conflicts(
        given, contested, row_keys[differ], own[differ], from_file[differ], key
    )
    if not fill.any() and not unusable.any():
        return rows, report
    index = rows.index
    joined = own.astype(object).mask(pd.Series(fill, index=index), from_file.astype(object))
    joined = joined.mask(pd.Series(unusable, index=index), None)
    out = rows.copy(deep=False)
    out[label] = pd.to_numeric(joined) if label_kind in ("integer", "float") else joined
    return out, report


def _conflicts(given, contested, row_keys, own, from_file, key: str) -> list[str]:
    """A few conflicts as text: the id and each source's label."""
    out = []
    for k in list(contested)[:3]:
        sources = given[given["k"] == k]
        said = ", ".join(
            f"{clip_value(v)!r} ({f})" for v, f in zip(sources["v"], sources["file"], strict=True)
        )
        out.append(f"{key} {clip_value(k)}: {said}")
    for k, a, b in list(zip(row_keys, own, from_file, strict=True))[: max(0, 5 - len(out))]:
        out.append(
            f"{key} {clip_value(k)}: its row says {clip_value(a)!r}, a label file {clip_value(b)!r}"
        )
    return [clip(e, 300) for e in out]
