"""The spec's rules for the rows a served model is asked to score, and its label values.

A served version has no spec at serving time, yet a row the spec forbids (an unknown category,
`feature_1: -1e9` where the spec says 0..100, a null in a non-nullable column) used to get a
confident answer: the one-hot encoder reads an unknown category as all zeros and trees answer
any number. So each version carries the rules of its spec's input columns and its label values
(`ServingRules`, the model folder's `serving.json`, written by `serving.save_model`), and
`check_rows` judges a request against them, after the model's own type coercion
(`features.coerce`, with the kinds the model's `SpecFeatures` step coerces to): what is judged
is what the model would read.

Pure functions over pandas; no MLflow, no Dagster.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlassets.ml import bounded

RULES_FORMAT = 1
# a spec type -> the kind of values (`features.KINDS`) it declares; text types declare none
SPEC_KINDS = {"integer": "number", "float": "number", "datetime": "datetime", "boolean": "boolean"}
# how a row's problem names a value its column's kind cannot read
_KIND_WORDS = {"number": "a number", "datetime": "a date", "boolean": "a boolean (true/false, 1/0)"}


@dataclass(frozen=True)
class ColumnRule:
    """What the spec allows in one input column (`spec.ColumnSpec`'s value rules)."""

    type: str
    nullable: bool = True
    min: float | None = None
    max: float | None = None
    values: list[Any] | None = None
    allow_infinite: bool = False


@dataclass(frozen=True)
class ServingRules:
    """The rules a served version checks rows against, and the label values it answers with.

    `negative` is None when neither the spec's label `values` nor the training rows named it:
    the version then answers 0/1, as versions did before."""

    columns: dict[str, ColumnRule]
    positive: Any
    negative: Any = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": RULES_FORMAT,
            "columns": {name: vars(rule) for name, rule in self.columns.items()},
            "label": {"positive": self.positive, "negative": self.negative},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ServingRules:
        """Rules as `to_dict` wrote them; ValueError, TypeError or KeyError for anything else."""
        if not isinstance(data, dict) or data.get("format") != RULES_FORMAT:
            raise ValueError(
                f"format is {data.get('format') if isinstance(data, dict) else data!r}"
            )
        columns = {}
        for name, rule in dict(data["columns"]).items():
            rule = ColumnRule(**rule)
            flags = (rule.nullable, rule.allow_infinite)
            if not isinstance(rule.type, str) or not all(isinstance(f, bool) for f in flags):
                raise TypeError(f"column {name!r}: a type, and nullable and allow_infinite flags")
            bounds = (rule.min, rule.max)
            if not all(b is None or isinstance(b, int | float) for b in bounds):
                raise TypeError(f"column {name!r}: min and max must be numbers")
            if rule.values is not None and not isinstance(rule.values, list):
                raise TypeError(f"column {name!r}: values must be a list")
            columns[str(name)] = rule
        label = dict(data["label"])
        return cls(columns, label["positive"], label.get("negative"))

    def labels(self, predictions: np.ndarray) -> np.ndarray:
        """The model's 0/1 `predictions` as the spec's label values (as they are when it names
        no negative value, or when its values are 1 and 0)."""
        predictions = np.asarray(predictions)
        if self.negative is None or _same_label(self.positive, 1) and _same_label(self.negative, 0):
            return predictions
        values = np.array([self.negative, self.positive], dtype=object)
        return values[(predictions == 1).astype(np.int64)]


def _same_label(value: Any, number: int) -> bool:
    """`value` is the integer `number` (not True, not 1.0 or "1": those are answered as given)."""
    return type(value) is int and value == number


def negative_label(spec, seen: Any = None) -> Any:
    """The label's negative value: the one value besides `label.positive` in the label
    column's `values`, else the one other value among `seen` (the training rows' labels), else
    None."""
    positive = spec.label.positive
    listed = spec.columns[spec.label.column].values
    others = [v for v in listed or [] if v != positive]
    if len(others) == 1:
        return others[0]
    if seen is not None:
        found = [v for v in pd.unique(pd.Series(seen).dropna()) if v != positive]
        if len(found) == 1:
            return found[0].item() if hasattr(found[0], "item") else found[0]
    return None


def rules_from_spec(spec, negative: Any = None) -> ServingRules:
    """The rules of `spec.model_inputs` and the label values; `negative` is the negative label
    seen in training, used when the spec's label `values` do not name it."""
    columns = {}
    for name in spec.model_inputs:
        c = spec.columns[name]
        columns[name] = ColumnRule(
            c.type,
            c.nullable,
            c.min,
            c.max,
            None if c.values is None else list(c.values),
            c.allow_infinite,
        )
    listed = negative_label(spec)
    return ServingRules(columns, spec.label.positive, negative if listed is None else listed)


# --- judging rows ----------------------------------------------------------------------------


@dataclass
class RowCheck:
    """What `check_rows` found: the rows as the model reads them, and what is wrong with each.

    `frame`: the input columns coerced as the model coerces them, a value that could not be read
    made missing. `problems[i]`: what is wrong with row i (empty when it fits the spec).
    `unscorable`: rows that cannot be scored (a value that cannot be read, or an infinity the
    spec forbids: the estimators refuse it). `summary`: one bounded line per column and rule."""

    frame: pd.DataFrame
    problems: list[list[str]]
    unscorable: np.ndarray
    summary: list[str] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return not self.summary


def check_rows(
    df: pd.DataFrame, rules: ServingRules, coercions: dict[str, str | None] | None
) -> RowCheck:
    """Judge each row of `df` against `rules`: types (a value the model's coercion cannot read,
    a fraction in an integer column), nulls where the spec forbids them, infinities, `min`/`max`
    and allowed `values`. `coercions`: the kind the model coerces each column to
    (`SpecFeatures.coercions`); a column it leaves alone is judged by its spec type.

    A column `df` lacks is refused (ValueError), as the model refuses it."""
    missing = [name for name in rules.columns if name not in df.columns]
    if missing:
        raise ValueError(f"the rows lack the model's input column(s) {missing}")
    found = _Found([[] for _ in range(len(df))], np.zeros(len(df), dtype=bool), [])
    frame = {}
    for name, rule in rules.columns.items():
        raw = df[name]
        model_kind = (coercions or {}).get(name)
        kind = model_kind or SPEC_KINDS.get(rule.type)
        values, bad, error = _read(raw, kind, name)
        if bad:
            found.unscorable[bad] = True
            found.summary.append(error)
            shown = raw.to_numpy(dtype=object)
            for i in bad:
                found.add(i, name, f"{_show(shown[i])} is not {_KIND_WORDS[kind]}")
        # the model reads its own coercion; a column it leaves alone (a category) keeps its raw
        # values, one that could not be read made missing
        frame[name] = values if model_kind else _blanked(raw, bad)
        absent = raw.isna().to_numpy(dtype=bool)
        if not rule.nullable:
            found.judge(
                name,
                absent,
                None,
                "that are missing (nullable: false)",
                "missing (nullable: false)",
            )
        present = ~absent
        present[bad] = False
        _judge_values(found, name, rule, kind, values, present)
    frame = pd.DataFrame(frame, index=df.index, copy=False)
    return RowCheck(frame, found.problems, found.unscorable, found.summary)


@dataclass
class _Found:
    """What `check_rows` has found so far."""

    problems: list[list[str]]
    unscorable: np.ndarray
    summary: list[str]

    def add(self, row: int, name: str, text: str) -> None:
        self.problems[row].append(bounded.clip(f"column {name!r}: {text}", bounded.VALUE_BYTES * 2))

    def judge(self, name: str, mask: np.ndarray, values: Any, what: str, says: str) -> None:
        """The rule `what` broken at the rows `mask` marks: each row's problem names the column
        and its value (`says` what is wrong with it); the summary a few distinct values and how
        many rows. `values`: the column's values by position (None: all missing)."""
        rows = np.flatnonzero(mask)
        if not len(rows):
            return
        for i in rows:
            self.add(i, name, says if values is None else f"{_show(values[i])} {says}")
        values = [None] * len(mask) if values is None else values
        distinct: dict[str, Any] = {}
        for i in rows:
            distinct.setdefault(repr(values[i]), _plain(values[i]))
            if len(distinct) >= bounded.SAMPLE_SIZE:
                break
        count = f"{len(rows):,} row{'s' if len(rows) != 1 else ''}"
        shown = bounded.sample(distinct.values(), limit=bounded.VALUE_BYTES // 2)
        self.summary.append(f"column {name!r} holds values {what}: {shown} ({count})")


def _read(raw: pd.Series, kind: str | None, name: str) -> tuple[pd.Series, list[int], str]:
    """`raw` coerced to `kind` by `features.coerce` (the model's own), the values it cannot read
    made missing; their positions, and the coercion's own message for them."""
    from mlassets.ml.features import UnreadableValues, coerce

    try:
        return coerce(raw, kind, name), [], ""
    except UnreadableValues as e:
        message, rows = str(e), e.rows
    if raw.index.is_unique:
        bad = sorted(raw.index.get_indexer(rows).tolist())
    else:  # a label may name several rows: find them by position
        try:
            coerce(raw.reset_index(drop=True), kind, name)
            bad = []
        except UnreadableValues as e:
            bad = sorted(int(i) for i in e.rows)
    try:
        values = coerce(_blanked(raw, bad), kind, name)
    except UnreadableValues:  # not judged value by value after all: every present value is unread
        bad = np.flatnonzero(raw.notna().to_numpy(dtype=bool)).tolist()
        values = coerce(_blanked(raw, bad), kind, name)
    return values, bad, message


def _blanked(raw: pd.Series, bad: list[int]) -> pd.Series:
    """`raw` with the values at positions `bad` missing (`raw` itself when there are none)."""
    if not bad:
        return raw
    out = raw.astype(object)  # a copy
    out.iloc[bad] = None
    return out


def _judge_values(
    found: _Found, name: str, rule: ColumnRule, kind: str | None, values: pd.Series, judged
) -> None:
    """The value rules (fractions in an integer column, infinities, min/max, allowed values) on
    the present, readable values (`judged`) of one coerced column."""
    if kind in ("number", "boolean"):
        x = values.to_numpy(dtype="float64", na_value=np.nan)
        finite = judged & np.isfinite(x)
        if rule.type == "integer":
            fraction = finite & (x != np.trunc(x))
            found.judge(
                name,
                fraction,
                x,
                "that are not whole numbers (type: integer)",
                "is not a whole number",
            )
        if not rule.allow_infinite:
            infinite = judged & np.isinf(x)
            found.unscorable |= infinite
            found.judge(
                name, infinite, x, "that are infinite (allow_infinite: false)", "is infinite"
            )
        bounded_ = (judged & ~np.isnan(x)) if rule.allow_infinite else finite
        if rule.min is not None:
            low = _number(rule.min)
            found.judge(
                name,
                bounded_ & (x < rule.min),
                x,
                f"below the spec's min {low}",
                f"is below the min {low}",
            )
        if rule.max is not None:
            high = _number(rule.max)
            found.judge(
                name,
                bounded_ & (x > rule.max),
                x,
                f"above the spec's max {high}",
                f"is above the max {high}",
            )
        if rule.values is not None:
            allowed = pd.to_numeric(pd.Series(rule.values, dtype=object), errors="coerce")
            outside = judged & ~np.isin(x, allowed.dropna().to_numpy(dtype="float64"))
            _judge_allowed(found, name, rule, outside, x)
    elif rule.values is not None:
        if kind == "datetime":
            seen = values
            allowed = pd.to_datetime(pd.Series(rule.values, dtype=object), errors="coerce")
        else:  # text: as the model's encoder reads categories (1, 1.0 and "1" are one)
            from mlassets.ml.features import as_categories

            seen = as_categories(values)
            allowed = as_categories(pd.Series(rule.values, dtype=object))
        outside = judged & ~seen.isin(allowed.dropna()).to_numpy(dtype=bool)
        _judge_allowed(found, name, rule, outside, values.to_numpy(dtype=object))


def _judge_allowed(found: _Found, name: str, rule: ColumnRule, outside, values) -> None:
    listed = bounded.sample(
        rule.values, size=2 * bounded.SAMPLE_SIZE, limit=bounded.VALUE_BYTES // 4
    )
    more = len(rule.values) - len(listed)
    shown = f"{listed}{f' and {more} more' if more > 0 else ''}"
    what = f"not among the spec's values {shown}"
    found.judge(name, outside, values, what, "is not among the spec's values")


def _plain(value: Any) -> Any:
    """A value as a message shows it: numpy scalars as Python's, dates as ISO text."""
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    return value.item() if hasattr(value, "item") else value


def _show(value: Any) -> str:
    return repr(bounded.clip_value(_plain(value)))


def _number(value: float) -> str:
    """A bound as the spec wrote it: 0 rather than 0.0."""
    return str(int(value)) if math.isfinite(value) and float(value).is_integer() else str(value)


def refusal(check: RowCheck) -> str:
    """The message refusing rows that break the spec: each rule broken, by column."""
    return bounded.clip(
        "the rows do not fit the model: "
        + "; ".join(check.summary)
        + ' (params {"output": "checked"} scores the rows that can be and lists what is wrong '
        "with each)"
    )
