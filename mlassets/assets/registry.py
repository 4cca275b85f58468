"""Group `registry`: the registered model version, then the `staging` and `production` aliases."""

from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    MaterializeResult,
    MetadataValue,
)

from mlassets.assets.factory import model_asset
from mlassets.assets.refusals import (
    MLFLOW_RETRY_POLICY,
    as_failure,
    retry_if_transient,
    transient_only,
)
from mlassets.catalog import Model, model_of
from mlassets.ml.provenance import Candidate, Rows
from mlassets.ml.records import EvaluationReport, Registration, Staged
from mlassets.resources import DatasetResource, ModelRegistry, mlflow_run


def registered_model(
    context: AssetExecutionContext,
    candidate_model: Candidate,
    evaluation_report: EvaluationReport,
    train_set: Rows,
    test_set: Rows,
):  # a generator that may yield nothing: a retrain that keeps production registers nothing
    """The candidate Pipeline as a new MLflow model version (skops, signature, input example).

    Registers only when the values it is given agree: the candidate is the one
    `evaluation_report` judged, on this `test_set`, every gate of that evaluation passed, and the
    candidate was trained on this `train_set`, from data that passed every blocking data-quality
    check under the current spec (`mlassets.ml.provenance.registration_refusals`). Nothing is
    read from the instance, so a partial selection, a re-run or a concurrent run cannot slip an
    unevaluated model through. The version is created `pending` and marked `registered` only
    when everything about it is logged; a crash in between leaves a version no alias may take.

    A challenger that only failed to beat production (`provenance.kept_production`) is a normal
    end: nothing is registered, the batches it was trained on are recorded as judged on the
    registered model (monitoring no longer counts them as recent), production_model observes
    "kept version N: ..." and the run succeeds, its later steps skipped.
    """
    with retry_if_transient():
        from mlassets.ml.provenance import kept_production

        kept = kept_production(evaluation_report)
        if kept:
            yield from _keep_production(context, candidate_model, evaluation_report, kept)
            return
        yield _register(context, candidate_model, evaluation_report, train_set, test_set)


def _keep_production(
    context, candidate_model: Candidate, evaluation_report: EvaluationReport, why: str
):
    """Production stays: record what was judged against it, say so, register nothing."""
    import mlflow
    from dagster import AssetObservation

    from mlassets.ml.registry import record_judged

    m = model_of(context)
    name = context.resources.dataset.spec(m).name
    version = evaluation_report.champion_challenger.production_version
    batches = candidate_model.provenance.get("batches") or []
    with mlflow_run(context) as run_id:
        judged = record_judged(context.resources.registry.client(), name, batches)
        mlflow.set_tags({"mlassets.outcome": "kept", "mlassets.kept": why[:5_000]})
    context.instance.add_run_tags(context.run_id, {"mlassets/outcome": why[:1_000]})
    context.log.info(why)
    yield AssetObservation(
        asset_key=m.key("production_model"),
        description=why,
        metadata={
            "outcome": "kept",
            "model_version": str(version),
            "mlflow_run_id": run_id,
            "judged_batches": MetadataValue.json([b["name"] for b in batches]),
            "batches_judged_in_all": len(judged),
        },
    )


def _register(
    context,
    candidate_model: Candidate,
    evaluation_report: EvaluationReport,
    train_set: Rows,
    test_set: Rows,
) -> MaterializeResult:
    """Register the candidate (refused with every reason when the values do not agree)."""
    from mlassets.ml.steps import register_candidate

    spec = context.resources.dataset.spec(model_of(context))
    # a refusal marks the MLflow run FAILED
    with mlflow_run(context) as run_id, as_failure():
        done = register_candidate(
            context.resources.registry.client(),
            run_id,
            candidate_model,
            evaluation_report,
            train_set,
            test_set,
            spec,
            tags={
                "dagster_run_id": context.run_id,
                "trigger": context.run.tags.get("mlassets/trigger", "manual"),
                "retrain_reason": context.run.tags.get(
                    "mlassets/retrain_reason", "none (manual run)"
                ),
            },
            description=f"Trained by Dagster run {context.run_id}",
        )
    tags, name, version = done.tags, spec.name, done.record.version
    context.log.info(f"registered {name} version {version} from MLflow run {run_id}")
    return MaterializeResult(
        value=done.record,
        metadata={
            "model_name": name,
            "model_version": version,
            "model_uri": f"models:/{name}/{version}",
            "mlflow_run_id": run_id,
            "candidate_digest": candidate_model.digest,
            "data_fingerprint": tags["data_fingerprint"],
            "train_fingerprint": tags["train_fingerprint"],
            "gates": MetadataValue.json(
                {k: g.model_dump(mode="json") for k, g in done.gates.items()}
            ),
        },
    )


@transient_only
def staging_model(
    context: AssetExecutionContext,
    registered_model: Registration,
    candidate_model: Candidate,
    test_set: Rows,
    dataset: DatasetResource,
    registry: ModelRegistry,
) -> MaterializeResult:
    """The alias `staging` on the new version, moved only once that version loads and predicts
    exactly like the candidate it was registered from (refused for any other candidate)."""
    from mlassets.ml.registry import STAGING
    from mlassets.ml.steps import stage

    with as_failure():
        staged, check = stage(
            registry.client(),
            registered_model,
            candidate_model,
            test_set,
            dataset.spec(model_of(context)),
            holder=context.run_id,
            log=context.log.warning,
        )
    return MaterializeResult(
        value=staged,
        metadata={
            "model_uri": f"models:/{staged.name}@{STAGING}",
            "model_version": staged.version,
            "candidate_digest": staged.candidate,
            "verified_rows": check["rows"],
        },
    )


@transient_only
def production_model(
    context: AssetExecutionContext, staging_model: Staged, registry: ModelRegistry
) -> MaterializeResult:
    """The alias `production` on the verified staging version; the one it replaces becomes
    `previous`. Refused when production moved since the candidate was compared with it (another
    run promoted, or a rollback) or the version is not `registered` (abandoned, rolled back).
    The checks and the moves happen under the model's lease, held by this run."""
    from mlassets.ml.steps import promote_staged

    with as_failure():
        moved = promote_staged(
            registry.client(), staging_model, holder=context.run_id, log=context.log.warning
        )
    return MaterializeResult(
        value=moved,
        metadata={
            "model_uri": f"models:/{moved.name}@production",
            "model_version": moved.production,
            "previous_version": moved.previous or "none",
        },
    )


def build(m: Model) -> list[AssetsDefinition]:
    """Group `registry` of model `m`: the version, then its aliases."""
    kinds, retry = {"mlflow"}, MLFLOW_RETRY_POLICY
    return [
        model_asset(
            m,
            registered_model,
            "registry",
            kinds,
            ins=("candidate_model", "evaluation_report", "train_set", "test_set"),
            logs_to_mlflow=True,
            retry_policy=retry,
            output_required=False,  # kept production: nothing registered, later steps skipped
        ),
        model_asset(
            m,
            staging_model,
            "registry",
            kinds,
            ins=("registered_model", "candidate_model", "test_set"),
            retry_policy=retry,
        ),
        model_asset(
            m, production_model, "registry", kinds, ins=("staging_model",), retry_policy=retry
        ),
    ]
