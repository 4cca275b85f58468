"""Group `features`: derived features and the train/validation/test split."""

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetIn,
    AssetOut,
    AssetsDefinition,
    Output,
    multi_asset,
)

from mlassets.assets.factory import model_asset
from mlassets.assets.metadata import preview, schema_metadata
from mlassets.assets.refusals import as_failure
from mlassets.catalog import Model, model_of
from mlassets.config import SplitConfig
from mlassets.ml.provenance import Rows
from mlassets.resources import DatasetResource


def features(
    context: AssetExecutionContext, raw_data: Rows, dataset: DatasetResource
) -> Output[Rows]:
    """The raw columns plus the spec's derived features, each from its row's own timestamp.

    Refuses rows whose blocking data-quality checks failed (the verdict travels with `raw_data`),
    so selecting `features*` after a failed check cannot train on rejected rows.
    """
    from mlassets.ml.steps import make_features

    spec = dataset.spec(model_of(context))
    with as_failure():
        rows = make_features(raw_data, spec)
    df, record = rows.frame, rows.provenance
    return Output(
        rows,
        metadata={
            "dagster/row_count": len(df),
            "dagster/column_schema": schema_metadata(df),
            "derived": ", ".join(spec.features.derived) or "(none)",
            "model_inputs": ", ".join(spec.input_columns),
            "fingerprint": record["features"],
            "data_fingerprint": record["data"],
            "preview": preview(df),
        },
    )


SPLITS = ("train_set", "validation_set", "test_set")


def splits(
    context: AssetExecutionContext,
    config: SplitConfig,
    features: Rows,
    dataset: DatasetResource,
):
    """Seeded train/validation/test sets (stratified on the label, or ordered by time).

    Each part carries the fingerprints of all three parts and the split check's verdict, so a
    candidate, its evaluation and its registration can prove they come from one split.
    """
    from mlassets.ml.data import target
    from mlassets.ml.defaults import SplitSettings
    from mlassets.ml.steps import make_splits

    m = model_of(context)
    spec = dataset.spec(m)
    with as_failure():
        result = make_splits(features, spec, SplitSettings(**config.model_dump()))
    verdict, ok = result.verdict, result.passed
    for name, rows in result.frames.items():
        part = rows.frame
        yield Output(
            rows,
            output_name=f"{name}_set",
            metadata={
                "dagster/row_count": len(part),
                "positive_rate": float(target(part, spec).mean()) if len(part) else 0.0,
                "dagster/column_schema": schema_metadata(part),
                "fingerprint": rows.provenance["split"][name],
                "preview": preview(part, 5),
            },
        )
    context.log.info(f"split check: {verdict}")
    yield AssetCheckResult(
        check_name="disjoint_and_stratified",
        asset_key=m.key("test_set"),
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


def build(m: Model) -> list[AssetsDefinition]:
    """Group `features` of model `m`: its features and its three splits."""
    split_keys = {name: m.key(name) for name in SPLITS}
    return [
        model_asset(m, features, "features", {"pandas"}, ins=["raw_data"]),
        multi_asset(
            name=m.op("splits"),
            group_name=m.group("features"),
            op_tags=m.tags,
            ins={"features": AssetIn(m.key("features"))},
            outs={name: AssetOut(key=key, kinds={"pandas"}) for name, key in split_keys.items()},
            check_specs=[
                AssetCheckSpec(
                    "disjoint_and_stratified",
                    asset=split_keys["test_set"],
                    additional_deps=[split_keys["train_set"], split_keys["validation_set"]],
                    blocking=True,
                    description="No row (by id) sits in two splits; positive rates differ by "
                    "<= 2 points.",
                )
            ],
        )(splits),
    ]
