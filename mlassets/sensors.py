"""`drift_sensor`: new batches in the landing folder -> the drift decision -> a training run."""

import json

from dagster import (
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from mlassets import settings
from mlassets.jobs import training_job
from mlassets.resources import DatasetResource, ModelRegistry, MonitoringResource

TAG = "mlassets"


def _skip(context: SensorEvaluationContext, message: str, cursor: dict | None) -> SensorResult:
    context.log.info(message)
    return SensorResult(
        skip_reason=SkipReason(message),
        cursor=json.dumps(cursor, sort_keys=True) if cursor is not None else context.cursor,
    )


@sensor(
    job=training_job,
    minimum_interval_seconds=settings.sensor_interval(),
    default_status=DefaultSensorStatus.RUNNING,
    description="Retrains when landed batches drift from the production model's reference or "
    "its accuracy/F1 on recent labels drops, and enough rows arrived. Never twice for the same "
    "batches.",
)
def drift_sensor(
    context: SensorEvaluationContext,
    dataset: DatasetResource,
    registry: ModelRegistry,
    monitoring: MonitoringResource,
):
    """Look at batches new since the cursor; decide on everything not yet trained on.

    The cursor (batch name -> content digest) only says whether anything new arrived; the
    decision always covers every batch the production model has not been trained on, so a
    batch that did not trigger a retrain on its own still counts towards the next decision,
    across daemon restarts too (the cursor lives in Dagster's storage).
    """
    from mlassets.ml.landing import batches_key, list_batches
    from mlassets.ml.monitoring import decide, production, recent
    from mlassets.ml.registry import RegistryError

    spec = dataset.spec()
    landing = dataset.landing_uri()
    if not landing:
        return _skip(context, f"the spec of {spec.name} names no landing folder", None)
    seen = json.loads(context.cursor) if context.cursor else {}
    landed = list_batches(landing)
    new = [b for b in landed if seen.get(b.name) != b.digest]
    if not new:
        return _skip(context, f"no new batches in {landing} ({len(landed)} seen before)", None)
    try:
        prod = production(registry.client(), spec.name)
    except RegistryError as e:
        return _skip(context, f"{e}: run training_job to promote a version that has one", None)
    if prod is None:
        # the cursor stays put: these batches are judged once a production model exists
        return _skip(
            context,
            f"{len(new)} new batch(es) but no production model for {spec.name}: "
            "run training_job first",
            None,
        )
    cursor = {b.name: b.digest for b in landed}
    rec = recent(landing, spec, prod)
    unreadable = "".join(f"; skipped unreadable batch {n}: {e}" for n, e in rec.errors.items())
    for name, error in rec.errors.items():
        context.log.warning(f"skipped unreadable batch {name}: {error}")
    if not rec.batches:
        return _skip(context, f"no readable batches to judge{unreadable}", cursor)
    report = decide(spec, prod, rec, monitoring.drift.thresholds(), registry.client())
    if not report.retrain:
        figures = "; ".join(report.reasons)
        return _skip(context, f"{figures}{unreadable}", cursor)

    window = monitoring.drift.window_batches
    train_on = rec.batches[-window:] if window > 0 else rec.batches
    key = batches_key(rec.batches)
    reasons = " | ".join(report.reasons)
    request = RunRequest(
        run_key=f"retrain-{spec.name}-{key}",
        run_config=monitoring.retrain_config(
            {"batches": [b.name for b in train_on], "consumed": [b.name for b in rec.batches]}
        ),
        tags={
            f"{TAG}/trigger": "drift_sensor",
            f"{TAG}/retrain_reason": report.summary[:1000],
            f"{TAG}/drifted_features": ",".join(report.drifted) or "none",
            f"{TAG}/degraded": str(report.degraded).lower(),
            f"{TAG}/batches_key": key,
            f"{TAG}/production_version": prod.version,
            f"{TAG}/skipped_batches": ",".join(sorted(rec.errors)) or "none",
        },
    )
    context.log.info(f"requesting training_job ({key}): {reasons[:2000]}")
    return SensorResult(run_requests=[request], cursor=json.dumps(cursor, sort_keys=True))
