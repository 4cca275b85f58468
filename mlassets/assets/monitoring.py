"""Group `monitoring`: what landed since production was trained, and the drift decision on it."""

import pandas as pd
from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    MaterializeResult,
    MetadataValue,
)

from mlassets.assets.factory import model_asset
from mlassets.assets.metadata import md_image, md_table
from mlassets.assets.refusals import MLFLOW_RETRY_POLICY, as_failure, retry_if_transient
from mlassets.catalog import Model, model_of
from mlassets.ml.provenance import Rows
from mlassets.ml.records import DriftDecision
from mlassets.resources import DatasetResource, ModelRegistry, MonitoringResource


def _production_seen(
    context: AssetExecutionContext, recent_data: Rows, registry: ModelRegistry, name: str
):
    """(production, None) or (None, why not): the version `recent_data` read when it ran, with
    its reference, never the alias read again (`monitoring.recorded_production`)."""
    from mlassets.ml.monitoring import production_at, recorded_production
    from mlassets.ml.provenance import of
    from mlassets.ml.registry import RegistryError

    job = model_of(context).job("training_job")
    with as_failure():
        version = recorded_production(of(recent_data))
    if version is None:  # recent_data said why (a production without a reference, or none)
        return None, of(recent_data).get("production_unusable") or (
            f"no production model for {name} yet when recent_data ran: run {job} first"
        )
    try:
        return production_at(registry.client(), name, version), None
    except RegistryError as e:
        return None, f"{e}: run {job} to promote a version that has one"


def _skipped(recent_data: Rows) -> list[dict]:
    """The batches recent_data skipped, with why (carried in its provenance record)."""
    from mlassets.ml.provenance import of

    return list(of(recent_data).get("skipped_batches") or [])


def _production_or_reason(registry: ModelRegistry, name: str, job: str = "training_job"):
    """(production, None) or (None, why monitoring cannot compare against it yet; `job` is the
    model's training job, which would fix it)."""
    from mlassets.ml.monitoring import production
    from mlassets.ml.registry import RegistryError

    try:
        prod = production(registry.client(), name)
    except RegistryError as e:
        return None, f"{e}: run {job} to promote a version that has one"
    if prod is None:
        return None, f"no production model for {name} yet: run {job} first"
    return prod, None


def recent_data(
    context: AssetExecutionContext, dataset: DatasetResource, registry: ModelRegistry
) -> MaterializeResult:
    """Landed batches the production model was not trained on, with their derived features.

    Each batch is validated on its own (the spec's per-batch rules) before it joins the others;
    a batch that cannot be read or breaks a rule is reported by name with why, and skipped: it
    never stops the others.
    """
    with retry_if_transient():  # outermost: RegistryError is handled inside
        from mlassets.ml.bounded import clip
        from mlassets.ml.landing import skipped_records
        from mlassets.ml.monitoring import recent
        from mlassets.ml.provenance import stamp

        spec = dataset.spec(model_of(context))
        landing = dataset.landing_uri(model_of(context))
        prod, why_not = _production_or_reason(
            registry, spec.name, model_of(context).job("training_job")
        )
        if why_not:
            context.log.warning(f"{why_not}; every landed batch counts as recent")
        rec = recent(landing, spec, prod, dataset.labels_uri(model_of(context)))
        skipped = skipped_records(rec.errors)
        labels = rec.labels.to_dict() if rec.labels is not None else None
        # which production these rows are "recent" for (read once, above): drift_report and
        # scored_batches judge them against that version only, whatever the alias says by then;
        # and which batches were left out, which they show too
        rows = stamp(
            rec.rows,
            {
                "spec": spec.name,
                "production_version": prod.version if prod else None,
                "production_unusable": why_not,
                "dagster_run_id": context.run_id,
                "skipped_batches": skipped,
                "labels": labels,
            },
        )
        for name, error in rec.errors.items():
            context.log.warning(clip(f"skipped batch {name}: {error}"))
        if rec.labels is not None:
            context.log.info(clip(f"labels: {rec.labels.summary()}"))
        return MaterializeResult(
            value=rows,
            metadata={
                "dagster/row_count": len(rec.rows),
                "landing": MetadataValue.path(landing or "(no landing folder in spec)"),
                "production_version": prod.version if prod else "none",
                "batches_landed": rec.landed,
                "recent_batches": md_table(
                    [{"batch": b.name, "digest": b.digest} for b in rec.batches]
                ),
                "skipped_batches": MetadataValue.json(skipped),
                **(
                    {
                        "labels": rec.labels.summary(),
                        "labelled_rows": int(rec.rows[spec.label.column].notna().sum())
                        if len(rec.rows)
                        else 0,
                        "label_join": MetadataValue.json(labels),
                    }
                    if rec.labels is not None
                    else {}
                ),
            },
        )


def drift_report(
    context: AssetExecutionContext,
    recent_data: Rows,
    dataset: DatasetResource,
    registry: ModelRegistry,
    monitoring: MonitoringResource,
) -> MaterializeResult:
    """Per-feature drift, performance on recent labels and estimated before them, volume, and
    the retrain decision; recorded as an MLflow run too (`monitoring.log_drift_report`).

    Judged against the production version `recent_data` read (its provenance), never the alias
    read again: a promotion between the two steps cannot judge one version's recent rows
    against another's reference. The metadata's `production_version` names that version.

    The same function (`mlassets.ml.drift.drift_report`) decides for `drift_sensor`.
    """
    with retry_if_transient():  # outermost: RegistryError is handled inside
        from mlassets.ml.drift import plot_drift
        from mlassets.ml.evaluation import png_data_url
        from mlassets.ml.monitoring import Recent, decide, estimate_figure, log_drift_report

        spec = dataset.spec(model_of(context))
        skipped = _skipped(recent_data)
        prod, reason = _production_seen(context, recent_data, registry, spec.name)
        if prod is None:
            context.log.info(reason)
            return MaterializeResult(
                value=DriftDecision(retrain=False, reasons=[reason], skipped_batches=skipped),
                metadata={"decision": reason, "skipped_batches": MetadataValue.json(skipped)},
            )
        report = decide(
            spec,
            prod,
            Recent([], recent_data.frame),
            monitoring.drift_for(model_of(context)).thresholds(),
            registry.client(),
        )
        context.log.info(report.summary)
        metadata = {
            "retrain": report.retrain,
            "decision": report.summary,
            "reasons": MetadataValue.md("\n".join(f"- {r}" for r in report.reasons)),
            "drifted_features": ", ".join(report.drifted) or "none",
            "recent_rows": report.rows,
            "production_version": prod.version,
            "features": MetadataValue.md(report.ranked().round(4).to_markdown(index=False)),
            "degradation": MetadataValue.json(report.degradation.model_dump(mode="json")),
            # judged without these: each broke the spec's rules on its own (see recent_data)
            "skipped_batches": MetadataValue.json(skipped),
        }
        estimated = report.estimated
        if estimated.evaluated:
            metadata["estimated"] = MetadataValue.json(estimated.model_dump(mode="json"))
            for name, m in estimated.metrics.items():
                if m.estimate is not None:
                    metadata[f"estimated_{name}"] = round(m.estimate, 4)
            reliability = estimated.reliability
            if reliability:
                # how far the rows lie outside the training range; batches past the bar have
                # their estimate marked unreliable (it does not decide for them)
                metadata["estimate_reliable"] = estimated.reliable
                metadata["outside_training_range"] = round(reliability.outside["share"], 4)
                metadata["unreliable_batches"] = ", ".join(reliability.unreliable_batches) or "none"
        if report.rows:
            fig = plot_drift(report, prod.reference, recent_data.frame)
            metadata["most_drifted"] = md_image(png_data_url(fig), "reference vs recent")
        figure = estimate_figure(report)
        if figure is not None:
            metadata["estimated_vs_realized"] = md_image(
                png_data_url(figure), "estimated vs realized performance per batch"
            )
        # the same figures and plot in MLflow, as a run of the production version's experiment
        metadata["mlflow_run_id"] = log_drift_report(
            registry.client(), prod, report, figure, {"mlassets.dagster_run_id": context.run_id}
        )
        return MaterializeResult(value=report.record(skipped), metadata=metadata)


def scored_batches(
    context: AssetExecutionContext,
    recent_data: Rows,
    dataset: DatasetResource,
    registry: ModelRegistry,
) -> MaterializeResult:
    """Every recent row scored by the `production` model `recent_data` read (as drift_report
    judges them): id, batch, score and prediction."""
    with retry_if_transient():  # outermost: RegistryError is handled inside
        from mlassets.ml.monitoring import production_model, score_batches

        spec = dataset.spec(model_of(context))
        skipped = MetadataValue.json(_skipped(recent_data))  # not scored: see recent_data
        prod, reason = _production_seen(context, recent_data, registry, spec.name)
        if prod is None or recent_data.frame.empty:
            why = reason or "no recent rows to score"
            context.log.info(why)
            return MaterializeResult(
                value=pd.DataFrame(), metadata={"note": why, "skipped_batches": skipped}
            )
        model = production_model(registry.client(), spec, prod.version)
        scored = score_batches(model, recent_data.frame, spec)
        per_batch = scored.groupby("_batch", sort=True)["prediction"].agg(["size", "mean"])
        return MaterializeResult(
            value=scored,
            metadata={
                "dagster/row_count": len(scored),
                "production_version": prod.version,
                "per_batch": md_table(
                    [
                        {
                            "batch": b,
                            "rows": int(r["size"]),
                            "predicted_positive_rate": round(r["mean"], 4),
                        }
                        for b, r in per_batch.iterrows()
                    ]
                ),
                "skipped_batches": skipped,
            },
        )


def build(m: Model) -> list[AssetsDefinition]:
    """Group `monitoring` of model `m`."""
    retry = MLFLOW_RETRY_POLICY
    return [
        model_asset(
            m,
            recent_data,
            "monitoring",
            {"pandas"},
            deps=[m.key("production_model")],
            retry_policy=retry,
        ),
        model_asset(m, drift_report, "monitoring", {"scipy"}, ["recent_data"], retry_policy=retry),
        model_asset(
            m, scored_batches, "monitoring", {"sklearn"}, ["recent_data"], retry_policy=retry
        ),
    ]
