"""Blocking data-quality checks on `raw_data`, generated from the spec and run by Great Expectations."""

import pandas as pd
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetIn,
    MetadataValue,
    multi_asset_check,
)

from mlassets.assets.metadata import md_table
from mlassets.ml.validation import CHECKS
from mlassets.resources import DatasetResource


@multi_asset_check(
    specs=[
        AssetCheckSpec(name, asset="raw_data", blocking=True, description=description)
        for name, description in CHECKS.items()
    ],
    ins={"raw_data": AssetIn("raw_data")},
)
def data_quality(
    context: AssetCheckExecutionContext, raw_data: pd.DataFrame, dataset: DatasetResource
):
    """One Great Expectations pass over `raw_data`, reported as one check per rule family."""
    from mlassets.ml.validation import by_check, validate

    outcomes = validate(raw_data, dataset.spec())
    for name, group in by_check(outcomes).items():
        failed = [o for o in group if not o.success]
        for o in failed:
            context.log.error(f"{name}: {o.describe()}")
        yield AssetCheckResult(
            asset_key="raw_data",
            check_name=name,
            passed=not failed,
            severity=AssetCheckSeverity.ERROR,
            description="; ".join(o.describe() for o in failed) if failed else None,
            metadata={
                "expectations": len(group),
                "failed": len(failed),
                "columns": ", ".join(sorted({o.column for o in failed if o.column})) or "",
                "offending_rows": sum(o.unexpected_count or 0 for o in failed),
                "failures": md_table(
                    [
                        {
                            "expectation": o.expectation,
                            "column": o.column or "(table)",
                            "offending_rows": o.unexpected_count,
                            "sample": o.sample if o.unexpected_count is not None else o.observed,
                            "error": o.error or "",
                        }
                        for o in failed
                    ]
                ),
                "details": MetadataValue.json(
                    [
                        {
                            "expectation": o.expectation,
                            "column": o.column,
                            "unexpected_count": o.unexpected_count,
                            "sample": o.sample,
                            "observed": o.observed,
                            "error": o.error,
                        }
                        for o in failed
                    ]
                ),
            },
        )
