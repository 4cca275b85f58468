"""Group `features`: derived features and the train/validation/test split."""

import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetOut,
    Output,
    asset,
    multi_asset,
)

from mlassets.assets.metadata import preview, schema_metadata
from mlassets.config import SplitConfig
from mlassets.resources import DatasetResource


@asset(group_name="features", kinds={"pandas"})
def features(raw_data: pd.DataFrame, dataset: DatasetResource) -> Output[pd.DataFrame]:
    """The raw columns plus the spec's derived features, each from its row's own timestamp."""
    from mlassets.ml.data import fingerprint
    from mlassets.ml.features import build_features

    spec = dataset.spec()
    df = build_features(raw_data, spec)
    return Output(
        df,
        metadata={
            "dagster/row_count": len(df),
            "dagster/column_schema": schema_metadata(df),
            "derived": ", ".join(spec.features.derived) or "(none)",
            "model_inputs": ", ".join(spec.input_columns),
            "fingerprint": fingerprint(df),
            "preview": preview(df),
        },
    )


SPLITS = ("train_set", "validation_set", "test_set")


@multi_asset(
    group_name="features",
    outs={name: AssetOut(kinds={"pandas"}) for name in SPLITS},
    check_specs=[
        AssetCheckSpec(
            "disjoint_and_stratified",
            asset="test_set",
            additional_deps=["train_set", "validation_set"],
            blocking=True,
            description="No row (by id) sits in two splits; positive rates differ by <= 2 points.",
        )
    ],
)
def splits(
    context: AssetExecutionContext,
    config: SplitConfig,
    features: pd.DataFrame,
    dataset: DatasetResource,
):
    """Seeded train/validation/test sets (stratified on the label, or ordered by time)."""
    from mlassets.ml.data import target
    from mlassets.ml.splitting import check_splits, split

    spec = dataset.spec()
    y = target(features, spec)
    parts = split(
        features,
        y,
        test_fraction=config.test_fraction,
        validation_fraction=config.validation_fraction,
        seed=config.seed,
        stratify=config.stratify,
        time_column=spec.timestamp if config.time_ordered else None,
    )
    for name, part in zip(SPLITS, (parts.train, parts.validation, parts.test), strict=True):
        yield Output(
            part,
            output_name=name,
            metadata={
                "dagster/row_count": len(part),
                "positive_rate": float(target(part, spec).mean()) if len(part) else 0.0,
                "dagster/column_schema": schema_metadata(part),
                "preview": preview(part, 5),
            },
        )
    verdict = check_splits(parts, lambda d: target(d, spec), spec.id)
    ok = verdict["disjoint"] and (
        verdict["stratified"] or not config.stratify or config.time_ordered
    )
    context.log.info(f"split check: {verdict}")
    yield AssetCheckResult(
        check_name="disjoint_and_stratified",
        asset_key="test_set",
        passed=ok,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "overlapping_rows": verdict["overlaps"],
            "positive_rates": verdict["positive_rates"],
            "rows": verdict["rows"],
            "max_rate_gap": verdict["max_rate_gap"],
            "identified_by": spec.id or "row index",
        },
    )
