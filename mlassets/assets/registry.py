"""Group `registry`: the registered model version, then the `staging` and `production` aliases."""

import json

import pandas as pd
from dagster import (
    AssetCheckKey,
    AssetExecutionContext,
    AssetKey,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)

from mlassets.checks.gates import REGISTRATION_CHECKS
from mlassets.resources import DatasetResource, ModelRegistry, mlflow_run

# Rows of training features kept with each version as the drift reference (a seeded sample).
REFERENCE_ROWS = 50_000


def _latest_gate_results(context: AssetExecutionContext) -> dict[str, dict]:
    """The latest evaluation of every metric gate on `evaluation_report`, from the instance."""
    from dagster._core.storage.asset_check_execution_record import (
        AssetCheckExecutionRecordStatus as Status,
    )

    keys = [AssetCheckKey(AssetKey("evaluation_report"), name) for name in REGISTRATION_CHECKS]
    records = context.instance.event_log_storage.get_latest_asset_check_execution_by_key(keys)
    results = {}
    for key in keys:
        rec = records.get(key)
        evaluation = rec.event.dagster_event.event_specific_data if rec and rec.event else None
        meta = {k: v.value for k, v in (getattr(evaluation, "metadata", None) or {}).items()}
        results[key.name] = {
            "passed": rec is not None and rec.status == Status.SUCCEEDED,
            "status": rec.status.value if rec else "never evaluated",
            "value": meta.get("value"),
            "threshold": meta.get("threshold"),
        }
    return results


def _raw_data_metadata(context: AssetExecutionContext) -> dict:
    """The latest `raw_data` materialization's metadata: its fingerprint and landed batches."""
    event = context.instance.get_latest_materialization_event(AssetKey("raw_data"))
    meta = event.asset_materialization.metadata if event and event.asset_materialization else {}
    return {k: v.value for k, v in meta.items()}


@asset(
    group_name="registry",
    kinds={"mlflow"},
    required_resource_keys={"mlflow", "dataset", "registry"},
)
def registered_model(
    context: AssetExecutionContext,
    candidate_model,
    evaluation_report: dict,
    train_set: pd.DataFrame,
    test_set: pd.DataFrame,
) -> MaterializeResult:
    """The candidate Pipeline as a new MLflow model version (skops, signature, input example).

    Refuses unless the latest evaluation of every metric gate passed, so a partial run that skips
    the gates cannot register an unchecked model. Tagged with the Dagster run id, the data
    fingerprint and the gate results. The training reference (a sample of the training features
    and the test baseline) is stored with it, for drift monitoring in a fresh process.
    """
    from mlassets.ml.drift import reference_sample
    from mlassets.ml.features import input_frame
    from mlassets.ml.registry import log_pipeline, log_reference, register

    spec = context.resources.dataset.spec()
    client = context.resources.registry.client()
    X = input_frame(test_set, spec)
    raw = _raw_data_metadata(context)
    with mlflow_run(context) as run_id:  # a refusal below marks the MLflow run FAILED
        gates = _latest_gate_results(context)
        failed = {k: v for k, v in gates.items() if not v["passed"]}
        if failed:
            raise Failure(
                description=f"not registering {spec.name}: gates not passed: {sorted(failed)}",
                metadata={"gates": MetadataValue.json(gates)},
            )
        info = log_pipeline(candidate_model, X)
        reference = reference_sample(
            train_set, [*spec.input_columns, spec.label.column], REFERENCE_ROWS
        )
        log_reference(
            reference,
            {
                "metrics": evaluation_report["metrics"],
                "data_fingerprint": raw.get("fingerprint", "unknown"),
                "batches": raw.get("consumed_batches") or [],
                "train_rows": len(train_set),
                "reference_rows": len(reference),
            },
        )
        tags = {
            "dagster_run_id": context.run_id,
            "data_fingerprint": str(raw.get("fingerprint", "unknown")),
            "gates": json.dumps(gates, sort_keys=True),
            "trigger": context.run.tags.get("mlassets/trigger", "manual"),
            "retrain_reason": context.run.tags.get("mlassets/retrain_reason", "none (manual run)"),
            **{f"test_{k}": f"{v:.6f}" for k, v in evaluation_report["metrics"].items()},
        }
        mv = register(
            client,
            spec.name,
            info.model_uri,
            run_id,
            tags,
            description=f"Trained by Dagster run {context.run_id}",
        )
    context.log.info(f"registered {spec.name} version {mv.version} from MLflow run {run_id}")
    return MaterializeResult(
        value={
            "name": spec.name,
            "version": str(mv.version),
            "run_id": run_id,
            "model_uri": info.model_uri,
        },
        metadata={
            "model_name": spec.name,
            "model_version": str(mv.version),
            "model_uri": f"models:/{spec.name}/{mv.version}",
            "mlflow_run_id": run_id,
            "data_fingerprint": tags["data_fingerprint"],
            "gates": MetadataValue.json(gates),
        },
    )


@asset(group_name="registry", kinds={"mlflow"})
def staging_model(
    registered_model: dict,
    candidate_model,
    test_set: pd.DataFrame,
    dataset: DatasetResource,
    registry: ModelRegistry,
) -> MaterializeResult:
    """The alias `staging` on the new version, moved only once that version loads and predicts."""
    from mlassets.ml.features import input_frame
    from mlassets.ml.registry import STAGING, set_alias_verified

    spec = dataset.spec()
    X = input_frame(test_set, spec)
    name, version = registered_model["name"], registered_model["version"]
    check = set_alias_verified(
        registry.client(), name, version, STAGING, X, candidate_model.predict(X)
    )
    return MaterializeResult(
        value={"name": name, "version": version},
        metadata={
            "model_uri": f"models:/{name}@{STAGING}",
            "model_version": version,
            "verified_rows": check["rows"],
        },
    )


@asset(group_name="registry", kinds={"mlflow"})
def production_model(staging_model: dict, registry: ModelRegistry) -> MaterializeResult:
    """The alias `production` on the verified staging version; the one it replaces becomes `previous`."""
    from mlassets.ml.registry import promote

    name, version = staging_model["name"], staging_model["version"]
    moved = promote(registry.client(), name, version)
    return MaterializeResult(
        value={"name": name, **moved},
        metadata={
            "model_uri": f"models:/{name}@production",
            "model_version": version,
            "previous_version": moved["previous"] or "none",
        },
    )
