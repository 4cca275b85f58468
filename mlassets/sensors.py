"""`drift_sensor`: new batches in the landing folder -> the drift decision -> a training run.
One per model, each with its own cursor, launching that model's training job only."""

import json

from dagster import (
    DefaultSensorStatus,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from mlassets import settings
from mlassets.catalog import Model
from mlassets.resources import DatasetResource, ModelRegistry, MonitoringResource

TAG = "mlassets"
# Bytes of one run tag the sensor writes from user data (batch names, reasons).
TAG_BYTES = 1_000


def _skip(context: SensorEvaluationContext, message: str, cursor: dict | None) -> SensorResult:
    from mlassets.ml.bounded import clip

    message = clip(message)
    context.log.info(message)
    return SensorResult(
        skip_reason=SkipReason(message),
        cursor=json.dumps(cursor, sort_keys=True) if cursor is not None else context.cursor,
    )


def drift_sensor(m: Model, training_job) -> SensorDefinition:
    """Model `m`'s drift sensor, launching `training_job` (that model's)."""

    @sensor(
        name=m.job("drift_sensor"),
        job=training_job,
        minimum_interval_seconds=m.settings.sensor_interval or settings.sensor_interval(),
        default_status=DefaultSensorStatus.RUNNING,
        description=f"Retrains {m.name} when its landed batches drift from the production "
        "model's reference, its accuracy/F1 on recent labels drops or the accuracy/F1 estimated "
        "before labels (calibrated probabilities) drops, and enough rows arrived. "
        "Never twice for the same batches; a batch that breaks the spec's rules is skipped by "
        "name.",
    )
    def drift(
        context: SensorEvaluationContext,
        dataset: DatasetResource,
        registry: ModelRegistry,
        monitoring: MonitoringResource,
    ):
        return judge_batches(m, context, dataset, registry, monitoring)

    return drift


def judge_batches(
    m: Model,
    context: SensorEvaluationContext,
    dataset: DatasetResource,
    registry: ModelRegistry,
    monitoring: MonitoringResource,
) -> SensorResult:
    """Look at batches new since the cursor; decide on everything not yet trained on.

    The cursor (batch name -> content digest) only says whether anything new arrived; the
    decision always covers every batch the production model has not been trained on, so a
    batch that did not trigger a retrain on its own still counts towards the next decision,
    across daemon restarts too (the cursor lives in Dagster's storage).

    The project's own refusals and failed services (`ml.errors.kind`: an unreadable landing
    folder, a broken spec, a registry that refuses or does not answer) are a skip that says what
    went wrong and what kind it is, and the cursor stays put so the next tick tries again. A bug
    is raised: the tick fails with its traceback, where a skip would hide it every tick.
    """
    import traceback

    from mlassets.ml.bounded import clip
    from mlassets.ml.errors import kind

    try:
        return _judge(m, context, dataset, registry, monitoring)
    except Exception as e:
        what = kind(e)
        if what is None:
            raise
        # where it failed (the innermost frames) and what, each bounded like any message
        frames = "".join(traceback.format_tb(e.__traceback__)[-3:])
        context.log.error(
            f"drift_sensor could not judge the landed batches ({what}): {type(e).__name__}: "
            f"{clip(str(e), 2_000)}\n{clip(frames)}"
        )
        where = _landing_or_unknown(dataset, m)
        return _skip(
            context,
            f"drift_sensor could not judge the batches in {where}: "
            f"{type(e).__name__}: {clip(str(e), 2_000)} ({what} error; the next tick tries again)",
            None,
        )


def _landing_or_unknown(dataset: DatasetResource, m: Model) -> str:
    try:
        return dataset.landing_uri(m) or "(no landing folder)"
    except Exception:  # the spec itself may be what failed
        return "the landing folder"


def _judge(
    m: Model,
    context: SensorEvaluationContext,
    dataset: DatasetResource,
    registry: ModelRegistry,
    monitoring: MonitoringResource,
) -> SensorResult:
    from mlassets.ml.bounded import clip
    from mlassets.ml.labels import PREFIX
    from mlassets.ml.landing import describe_skipped, list_batches
    from mlassets.ml.monitoring import decide, labelled, production, recent
    from mlassets.ml.registry import RegistryError

    spec = dataset.spec(m)
    landing = dataset.landing_uri(m)
    if not landing:
        return _skip(context, f"the spec of {spec.name} names no landing folder", None)
    labels = dataset.labels_uri(m)
    seen = json.loads(context.cursor) if context.cursor else {}
    landed = list_batches(landing)
    # label files are seen under `labels/<name>`: labels that arrive for batches already judged
    # make the next tick decide again
    files = {b.name: b.digest for b in landed}
    files.update({f"{PREFIX}{f.name}": f.digest for f in list_batches(labels)} if labels else {})
    new = [name for name, digest in files.items() if seen.get(name) != digest]
    if not new:
        said = f"no new batches in {landing} ({len(landed)} seen before)"
        if labels:
            said += f" nor label files in {labels} ({len(files) - len(landed)} seen before)"
        return _skip(context, said, None)
    try:
        prod = production(registry.client(), spec.name)
    except RegistryError as e:
        return _skip(
            context, f"{e}: run {m.job('training_job')} to promote a version that has one", None
        )
    if prod is None:
        # the cursor stays put: these batches are judged once a production model exists
        return _skip(
            context,
            f"{len(new)} new batch(es) or label file(s) but no production model for "
            f"{spec.name}: run {m.job('training_job')} first",
            None,
        )
    # every landed file is marked seen, skipped ones too: a bad batch is reported each time a
    # decision is made but does not make every tick a new one; fixing it changes its digest
    cursor = files
    rec = recent(landing, spec, prod, labels)
    for name, error in rec.errors.items():
        context.log.warning(clip(f"skipped batch {name}: {error}"))
    if rec.labels is not None:
        context.log.info(clip(f"labels: {rec.labels.summary()}"))
    notes = f"; {describe_skipped(rec.errors)}" if rec.errors else ""
    # then what the label files did: what joined, and every label that did not
    if rec.labels is not None and (rec.labels.files or rec.labels.skipped):
        notes += f"; labels: {rec.labels.summary()}"
    if not rec.batches and not rec.errors:
        return _skip(
            context,
            f"no recent batches: production version {prod.version} was trained on, or kept "
            f"after judging, every batch in {landing}{notes}",
            cursor,
        )
    if not rec.batches:
        return _skip(context, f"no valid batches to judge{notes}", cursor)
    report = decide(spec, prod, rec, monitoring.drift_for(m).thresholds(), registry.client())
    if not report.retrain:
        # the skipped batches right after the decision: the figures that follow can be long,
        # and a message too long is cut at its end
        head, *figures = report.reasons
        return _skip(context, "; ".join([f"{head}{notes}", *figures]), cursor)

    trainable, unlabelled = labelled(rec, spec.label.column)
    waiting = f"; waiting for labels: {clip(', '.join(unlabelled), 300)}" if unlabelled else ""
    if not trainable:
        return _skip(
            context, f"{report.summary}; but no batch has its labels yet{waiting}{notes}", cursor
        )
    window = monitoring.drift_for(m).window_batches
    train_on = trainable[-window:] if window > 0 else trainable
    key = rec.evidence_key()
    reasons = " | ".join(report.reasons)
    request = RunRequest(
        run_key=f"retrain-{spec.name}-{key}",
        run_config=monitoring.retrain_config(
            {"batches": [b.name for b in train_on], "consumed": [b.name for b in trainable]}, m
        ),
        tags={
            f"{TAG}/trigger": "drift_sensor",
            f"{TAG}/retrain_reason": clip(report.summary, TAG_BYTES),
            f"{TAG}/drifted_features": ",".join(report.drifted) or "none",
            f"{TAG}/degraded": str(report.degraded).lower(),
            f"{TAG}/estimated_degraded": str(report.estimated_degraded).lower(),
            f"{TAG}/batches_key": key,
            f"{TAG}/production_version": prod.version,
            f"{TAG}/skipped_batches": clip(",".join(sorted(rec.errors)), TAG_BYTES) or "none",
            f"{TAG}/skipped_reasons": clip(describe_skipped(rec.errors), TAG_BYTES) or "none",
            f"{TAG}/unreliable_batches": clip(
                ",".join(report.estimated.reliability.unreliable_batches)
                if report.estimated.reliability
                else "",
                TAG_BYTES,
            )
            or "none",
            f"{TAG}/label_files": clip(
                ",".join(f["name"] for f in rec.labels.files) if rec.labels else "", TAG_BYTES
            )
            or "none",
        },
    )
    context.log.info(clip(f"requesting {m.job('training_job')} ({key}): {reasons}{notes}{waiting}"))
    return SensorResult(run_requests=[request], cursor=json.dumps(cursor, sort_keys=True))
