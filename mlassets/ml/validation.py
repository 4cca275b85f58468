"""Data quality: a Great Expectations suite generated from the dataset spec.

Each expectation carries the name of the Dagster check it belongs to (`meta["check"]`), so one
validation pass feeds every data-quality check on `raw_data`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlassets.ml import bounded
from mlassets.spec import DatasetSpec

if TYPE_CHECKING:  # pandas is imported where it is used: `CHECKS` is read at code-location load
    import pandas as pd

CHECKS: dict[str, str] = {
    "columns_match_spec": "the file has exactly the spec's columns, in order",
    "types_match_spec": "each column holds values of its declared type",
    "min_row_count": "the file has at least the spec's min_rows rows",
    "label_classes": "the label holds the positive value and one other, each with enough rows "
    "for the splits and the search's folds",
    "not_null": "non-nullable columns (and the id) have no missing values",
    "features_not_empty": "no feature column is entirely missing",
    "unique": "unique columns (and the id) have no duplicates",
    "values_in_range": "numeric columns lie within their min/max",
    "finite_values": "numeric columns hold no infinity unless the spec allows it",
    "values_allowed": "columns with allowed values hold only those",
}
# The checks judged here with pandas (declared types, infinities, label classes); the others are
# Great Expectations expectations.
PANDAS_CHECKS = ("types_match_spec", "finite_values", "label_classes")
# The checks that judge one landed batch on its own (a batch may be small, or hold one class).
BATCH_CHECKS = (
    "columns_match_spec",
    "types_match_spec",
    "not_null",
    "features_not_empty",
    "unique",
    "values_in_range",
    "finite_values",
    "values_allowed",
)
SAMPLE_SIZE = bounded.SAMPLE_SIZE
_NUMERIC = ("integer", "float")


@dataclass
class ExpectationOutcome:
    """One expectation's verdict, in the terms a person needs to fix the data."""

    check: str
    expectation: str
    column: str | None
    success: bool
    unexpected_count: int | None = None
    sample: list[Any] = field(default_factory=list)
    observed: Any = None
    error: str | None = None

    def describe(self) -> str:
        """One line naming the rule, the column and a few offending values; bounded in bytes."""
        where = f"column {self.column!r}" if self.column else "table"
        if self.error:
            text = f"{self.expectation} on {where}: {self.error}"
        elif self.unexpected_count is not None:
            text = (
                f"{self.expectation} on {where}: {self.unexpected_count} offending row(s), "
                f"e.g. {self.sample}"
            )
        else:
            text = f"{self.expectation} on {where}: observed {self.observed}"
        return bounded.clip(text)


def min_rows_per_class(split: Any = None, training: Any = None) -> int:
    """Rows each label class needs so that a stratified split leaves one in validation and test
    and the search's stratified folds find `cv_folds` in the training part (sklearn refuses
    fewer, late and without naming the label). `split`/`training`: settings with the fields of
    `SplitSettings`/`TrainingSettings` (default: the defaults)."""
    import math

    from mlassets.ml.defaults import SPLIT, TRAINING

    split, training = split or SPLIT, training or TRAINING
    train_fraction = 1 - split.test_fraction - split.validation_fraction
    needs = [1 / split.test_fraction]
    if getattr(training, "strategy", None) != "fixed":  # every other strategy cross-validates
        needs.append(training.cv_folds / train_fraction)
    if split.validation_fraction:
        needs.append(1 / split.validation_fraction)
    return math.ceil(max(needs) - 1e-9)


def build_suite(spec: DatasetSpec, skip: frozenset[str] = frozenset(), batch: bool = False):
    """The expectation suite for a spec; each expectation tagged with its check's name.

    `skip`: columns whose values are not of their declared type (a range or set rule on them
    would only fail again, less clearly). `batch`: only the rules that judge one landed batch.
    """
    import great_expectations as gx

    ex = gx.expectations
    expectations = []
    wanted = set(BATCH_CHECKS) if batch else set(CHECKS)

    def add(check: str, expectation) -> None:
        if check in wanted:
            expectation.meta = {"check": check}
            expectations.append(expectation)

    add(
        "columns_match_spec",
        ex.ExpectTableColumnsToMatchOrderedList(column_list=list(spec.columns)),
    )
    add("min_row_count", ex.ExpectTableRowCountToBeBetween(min_value=spec.min_rows))
    features = {*spec.features.numeric, *spec.features.categorical}
    for name, col in spec.columns.items():
        if not col.nullable or name == spec.id:
            add("not_null", ex.ExpectColumnValuesToNotBeNull(column=name))
        if name in features:
            add(
                "features_not_empty",
                ex.ExpectColumnProportionOfNonNullValuesToBeBetween(
                    column=name, min_value=0, strict_min=True
                ),
            )
        if col.unique or name == spec.id:
            add("unique", ex.ExpectColumnValuesToBeUnique(column=name))
        if name in skip:
            continue
        if col.min is not None or col.max is not None:
            add(
                "values_in_range",
                ex.ExpectColumnValuesToBeBetween(column=name, min_value=col.min, max_value=col.max),
            )
        if col.values is not None:
            add("values_allowed", ex.ExpectColumnValuesToBeInSet(column=name, value_set=col.values))
    # Passed to the constructor: `suite.add_expectation` needs an active data context and would
    # fail when the suite is built outside `validate` (DataContextRequiredError).
    return gx.ExpectationSuite(name=f"{spec.name}_raw_data", expectations=expectations)


def validate(
    df: pd.DataFrame, spec: DatasetSpec, *, batch: bool = False, min_per_class: int | None = None
) -> list[ExpectationOutcome]:
    """Run the spec's rules on `df`: its declared types, finiteness and label classes (checked
    here, where pandas' dtypes are understood), then the Great Expectations suite through an
    ephemeral context (nothing written to disk).

    `batch`: judge one landed batch (`BATCH_CHECKS`: no row count or label-class rule, which
    only make sense for a table to train on). `min_per_class`: rows each label class needs
    (default: `min_rows_per_class()` for the default split and search).
    """
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    own = [*type_outcomes(df, spec), *finite_outcomes(df, spec)]
    if not batch:
        own.append(label_outcome(df, spec, min_per_class or min_rows_per_class()))
    mistyped = frozenset(o.column for o in own if o.check == "types_match_spec" and not o.success)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_pandas("mlassets")
    try:
        batch_def = source.add_dataframe_asset("raw_data").add_batch_definition_whole_dataframe(
            "all"
        )
        ge_batch = batch_def.get_batch(batch_parameters={"dataframe": df})
        result = ge_batch.validate(
            build_suite(spec, mistyped, batch),
            result_format={"result_format": "SUMMARY", "partial_unexpected_count": SAMPLE_SIZE},
        )
        return [*own, *(_outcome(r) for r in result.results)]
    finally:
        # GE's module-level project manager keeps the context, and through the data source's
        # execution engine the whole DataFrame, alive for the life of the process (the raw
        # table, ~115 MiB per 1,000,000 rows, held through every later step): let it go.
        context.data_sources.delete("mlassets")


def _type_errors(values: pd.Series, declared: str) -> pd.Series | None:
    """The non-null values of `values` that are not of the `declared` type (None: all are).

    Types are judged on values, not only dtypes: an integer column with a missing value reads
    from CSV as float (1.0, NaN) and is still an integer column; 1.5 in it is not."""
    import numpy as np
    import pandas as pd

    present = values.dropna()
    if declared in ("string", "category") or present.empty:
        return None
    if declared == "datetime":
        return None if pd.api.types.is_datetime64_any_dtype(values) else present
    if declared == "boolean":
        if pd.api.types.is_bool_dtype(values):
            return None
        ok = present.isin([True, False, 0, 1])
        return None if ok.all() else present[~ok]
    if pd.api.types.is_bool_dtype(values):
        return present
    if not pd.api.types.is_numeric_dtype(values):
        as_number = pd.to_numeric(present, errors="coerce")  # e.g. Decimal values: numbers
        bad = present[as_number.isna()]
        if declared == "integer" and not len(bad):
            whole = as_number.astype("float64")
            bad = present[np.isfinite(whole) & (whole != np.floor(whole))]
        return bad if len(bad) else None
    if declared == "integer" and pd.api.types.is_float_dtype(values):
        finite = present[np.isfinite(present.to_numpy(dtype="float64"))]
        bad = finite[finite != np.floor(finite)]
        return bad if len(bad) else None
    return None


def type_outcomes(df: pd.DataFrame, spec: DatasetSpec) -> list[ExpectationOutcome]:
    """`types_match_spec`: one outcome per declared column present in `df`."""
    outcomes = []
    for name, col in spec.columns.items():
        if name not in df.columns:
            continue
        bad = _type_errors(df[name], col.type)
        outcomes.append(
            ExpectationOutcome(
                check="types_match_spec",
                expectation=f"values_are_{col.type}",
                column=name,
                success=bad is None,
                unexpected_count=None if bad is None else len(bad),
                sample=[] if bad is None else bounded.sample(bad.unique()),
                observed=str(df[name].dtype),
            )
        )
    return outcomes


def finite_outcomes(df: pd.DataFrame, spec: DatasetSpec) -> list[ExpectationOutcome]:
    """`finite_values`: numeric columns hold no +/-inf unless the spec sets `allow_infinite`."""
    import numpy as np
    import pandas as pd

    outcomes = []
    for name, col in spec.columns.items():
        if col.type not in _NUMERIC or col.allow_infinite or name not in df.columns:
            continue
        if not pd.api.types.is_float_dtype(df[name]):
            continue  # integers cannot be infinite; a non-numeric column fails types_match_spec
        inf = df[name][np.isinf(df[name].to_numpy(dtype="float64", na_value=np.nan))]
        outcomes.append(
            ExpectationOutcome(
                check="finite_values",
                expectation="values_are_finite",
                column=name,
                success=inf.empty,
                unexpected_count=len(inf),
                sample=bounded.sample(inf.unique()),
            )
        )
    return outcomes


def label_outcome(df: pd.DataFrame, spec: DatasetSpec, min_per_class: int) -> ExpectationOutcome:
    """`label_classes`: the label holds the spec's positive value and exactly one other, each
    in at least `min_per_class` rows. A positive value that is absent (a typo such as
    "Malignant" for "malignant") would otherwise make every row a negative and fail in sklearn."""
    name, positive = spec.label.column, spec.label.positive
    outcome = ExpectationOutcome(
        check="label_classes",
        expectation="label_has_two_classes",
        column=name,
        success=False,
    )
    if name not in df.columns:
        outcome.error = "the label column is missing"
        return outcome
    counts = df[name].value_counts(dropna=True)
    unlabelled = int(df[name].isna().sum())
    seen = {bounded.clip_value(_plain(k)): int(v) for k, v in counts.head(SAMPLE_SIZE).items()}
    outcome.observed = {"classes": seen, "distinct": len(counts)}
    problems, close = [], []
    if positive not in counts.index:
        close = [k for k in counts.index if str(k).strip().lower() == str(positive).strip().lower()]
        hint = f" (did you mean {_plain(close[0])!r}?)" if close else ""
        problems.append(f"the positive value {positive!r} (label.positive) is absent{hint}")
    # the value the spec most likely meant is not counted as a second negative class
    others = [k for k in counts.index if k != positive and k not in close[:1]]
    if not others:
        problems.append("there is no negative class")
    elif len(others) > 1:
        problems.append(
            f"{len(others)} values besides the positive one: a binary label has one "
            f"(e.g. {bounded.sample(others)})"
        )
    if unlabelled:
        problems.append(f"{unlabelled} row(s) have no label")
    small = {bounded.clip_value(_plain(k)): int(v) for k, v in counts.items() if v < min_per_class}
    if small and not problems:
        problems.append(
            f"class(es) {small} have fewer than {min_per_class} rows, the least the split and "
            "the search's folds need"
        )
    outcome.success = not problems
    if problems:
        outcome.error = bounded.clip(
            f"{'; '.join(problems)}; classes seen: {seen}", bounded.MESSAGE_BYTES // 2
        )
    return outcome


def _outcome(r) -> ExpectationOutcome:
    cfg = r.expectation_config
    res = dict(r.result or {})
    exc = r.exception_info or {}
    if exc and "raised_exception" not in exc:  # keyed by metric id when a metric failed
        exc = next(iter(exc.values()), {})
    error = exc.get("exception_message") if exc.get("raised_exception") else None
    sample = bounded.sample(_plain(v) for v in res.get("partial_unexpected_list", []))
    observed = res.get("observed_value")
    if cfg.type == "expect_table_columns_to_match_ordered_list" and isinstance(observed, list):
        expected = list(cfg.kwargs.get("column_list") or [])
        observed = {
            "missing": [c for c in expected if c not in observed],
            "unexpected": [c for c in observed if c not in expected],
            "observed_order": observed,
        }
    return ExpectationOutcome(
        check=cfg.meta.get("check", "other"),
        expectation=cfg.type,
        column=cfg.kwargs.get("column"),
        success=bool(r.success),
        unexpected_count=res.get("unexpected_count"),
        sample=sample,
        observed=_bounded_observed(observed),
        error=bounded.clip(error, bounded.MESSAGE_BYTES // 2) if error else None,
    )


def _bounded_observed(observed: Any) -> Any:
    """An observed value (a figure, a dict of column lists) with every list and string clipped."""
    if isinstance(observed, dict):
        return {k: _bounded_observed(v) for k, v in observed.items()}
    if isinstance(observed, list):
        return bounded.sample(observed, size=3 * SAMPLE_SIZE)
    return bounded.clip_value(observed)


def _plain(v: Any) -> Any:
    if v is None or (isinstance(v, float) and v != v):  # NaN
        return None
    return v.item() if hasattr(v, "item") else v


def by_check(outcomes: list[ExpectationOutcome]) -> dict[str, list[ExpectationOutcome]]:
    """Group outcomes under every check name in `CHECKS` (a check with none is vacuously met)."""
    grouped: dict[str, list[ExpectationOutcome]] = {name: [] for name in CHECKS}
    for o in outcomes:
        grouped.setdefault(o.check, []).append(o)
    return grouped
