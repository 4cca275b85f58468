"""Data quality: a Great Expectations suite generated from the dataset spec.

Each expectation carries the name of the Dagster check it belongs to (`meta["check"]`), so one
validation pass feeds every data-quality check on `raw_data`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlassets.spec import DatasetSpec

if TYPE_CHECKING:  # pandas is imported where it is used: `CHECKS` is read at code-location load
    import pandas as pd

CHECKS: dict[str, str] = {
    "columns_match_spec": "the file has exactly the spec's columns, in order",
    "min_row_count": "the file has at least the spec's min_rows rows",
    "not_null": "non-nullable columns (and the id) have no missing values",
    "unique": "unique columns (and the id) have no duplicates",
    "values_in_range": "numeric columns lie within their min/max",
    "values_allowed": "columns with allowed values hold only those",
}
SAMPLE_SIZE = 10


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
        where = f"column {self.column!r}" if self.column else "table"
        if self.error:
            return f"{self.expectation} on {where}: {self.error}"
        if self.unexpected_count is not None:
            return (
                f"{self.expectation} on {where}: {self.unexpected_count} offending row(s), "
                f"e.g. {self.sample}"
            )
        return f"{self.expectation} on {where}: observed {self.observed}"


def build_suite(spec: DatasetSpec):
    """The expectation suite for a spec; each expectation tagged with its check's name."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    ex = gx.expectations
    expectations = []

    def add(check: str, expectation) -> None:
        expectation.meta = {"check": check}
        expectations.append(expectation)

    add(
        "columns_match_spec",
        ex.ExpectTableColumnsToMatchOrderedList(column_list=list(spec.columns)),
    )
    add("min_row_count", ex.ExpectTableRowCountToBeBetween(min_value=spec.min_rows))
    for name, col in spec.columns.items():
        if not col.nullable or name == spec.id:
            add("not_null", ex.ExpectColumnValuesToNotBeNull(column=name))
        if col.unique or name == spec.id:
            add("unique", ex.ExpectColumnValuesToBeUnique(column=name))
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


def validate(df: pd.DataFrame, spec: DatasetSpec) -> list[ExpectationOutcome]:
    """Run the spec's suite on `df` through an ephemeral GE context (nothing written to disk)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_pandas("mlassets")
    try:
        batch_def = source.add_dataframe_asset("raw_data").add_batch_definition_whole_dataframe(
            "all"
        )
        batch = batch_def.get_batch(batch_parameters={"dataframe": df})
        result = batch.validate(
            build_suite(spec),
            result_format={"result_format": "SUMMARY", "partial_unexpected_count": SAMPLE_SIZE},
        )
        return [_outcome(r) for r in result.results]
    finally:
        # GE's module-level project manager keeps the context, and through the data source's
        # execution engine the whole DataFrame, alive for the life of the process (the raw
        # table, ~115 MiB per 1,000,000 rows, held through every later step): let it go.
        context.data_sources.delete("mlassets")


def _outcome(r) -> ExpectationOutcome:
    cfg = r.expectation_config
    res = dict(r.result or {})
    exc = r.exception_info or {}
    if exc and "raised_exception" not in exc:  # keyed by metric id when a metric failed
        exc = next(iter(exc.values()), {})
    error = exc.get("exception_message") if exc.get("raised_exception") else None
    sample = [_plain(v) for v in res.get("partial_unexpected_list", [])][:SAMPLE_SIZE]
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
        observed=observed,
        error=error,
    )


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
