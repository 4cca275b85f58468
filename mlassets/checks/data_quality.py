"""Blocking data-quality checks on `raw_data`, generated from the spec and run by Great Expectations.

They run inside the `raw_data` step (declared as its `check_specs`), so the verdict is known when
the value is written and travels with it: a later partial run that starts below `raw_data` sees
that the rows it is given failed, instead of reading "the latest" check record of the instance.
"""

from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, AssetKey, MetadataValue

from mlassets.assets.metadata import md_table
from mlassets.ml.validation import CHECKS

# Failed expectations listed per check in its metadata (a spec can declare hundreds of columns).
SHOWN = 20


def data_quality_specs(raw_data: AssetKey) -> list[AssetCheckSpec]:
    """The blocking checks of one model's `raw_data`."""
    return [
        AssetCheckSpec(name, asset=raw_data, blocking=True, description=description)
        for name, description in CHECKS.items()
    ]


def quality_results(outcomes: list, raw_data: AssetKey) -> list[AssetCheckResult]:
    """One check result per rule family from one Great Expectations pass."""
    from mlassets.ml.bounded import MESSAGE_BYTES, clip
    from mlassets.ml.validation import by_check

    results = []
    for name, group in by_check(outcomes).items():
        failed = [o for o in group if not o.success]
        shown = failed[:SHOWN]  # each outcome's sample and text are bounded; so is their number
        results.append(
            AssetCheckResult(
                asset_key=raw_data,
                check_name=name,
                passed=not failed,
                severity=AssetCheckSeverity.ERROR,
                description=clip("; ".join(o.describe() for o in shown), MESSAGE_BYTES)
                if failed
                else None,
                metadata={
                    "expectations": len(group),
                    "failed": len(failed),
                    "columns": clip(", ".join(sorted({o.column for o in failed if o.column}))),
                    "offending_rows": sum(o.unexpected_count or 0 for o in failed),
                    "failures": md_table(
                        [
                            {
                                "expectation": o.expectation,
                                "column": o.column or "(table)",
                                "offending_rows": o.unexpected_count,
                                "sample": o.sample
                                if o.unexpected_count is not None
                                else o.observed,
                                "error": o.error or "",
                            }
                            for o in shown
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
                            for o in shown
                        ]
                    ),
                },
            )
        )
    return results
