"""Print what the last run did (rows read, checks, test metrics) and what production serves.

The production lines come from the registry itself (the version behind `production` and the
metrics tagged on that version when it was registered), not from the last run, which may have
trained a model that was never promoted or may have been a rollback.

Usage (after `dagster asset materialize`): python -m mlassets.summary
"""

from dagster import AssetKey, DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter

from mlassets import settings
from mlassets.catalog import TRAINING_TAG, Model
from mlassets.ml.evaluation import METRICS


def _latest_metadata(instance: DagsterInstance, key: AssetKey) -> dict:
    event = instance.get_latest_materialization_event(key)
    if event is None or event.asset_materialization is None:
        return {}
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def _last_run_lines(instance: DagsterInstance, m: Model) -> list[str]:
    """The latest run of the instance (of the model's training job when a folder holds several
    models): its status and its asset checks (a display only)."""
    runs = instance.get_run_records(
        RunsFilter(tags={TRAINING_TAG: m.ident}) if m.prefixed else RunsFilter(), limit=1
    )
    if not runs:
        return [f"no training run of {m.name} yet"] if m.prefixed else []
    run = runs[0].dagster_run
    checks = [
        entry.asset_check_evaluation
        for entry in instance.all_logs(run.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
    ]
    lines = [
        f"run {run.run_id[:8]}: {run.status.value}",
        f"checks passed: {sum(c.passed for c in checks)}/{len(checks)}",
    ]
    lines += [
        f"  FAILED {c.asset_key.to_user_string()}:{c.check_name}" for c in checks if not c.passed
    ]
    if run.status != DagsterRunStatus.SUCCESS:
        lines.append("see `make dev` (the Dagster UI) for the failed step and its metadata")
    return lines


def production_lines(client, model_name: str) -> list[str]:
    """Which version serves, the one before it, and that version's own registered test metrics."""
    from mlassets.ml.registry import PREVIOUS, PRODUCTION, alias_version

    production = alias_version(client, model_name, PRODUCTION)
    if production is None:
        return [f"production model: none registered for {model_name}"]
    previous = alias_version(client, model_name, PREVIOUS)
    tags = client.get_model_version(model_name, production).tags
    names = [
        *METRICS,
        *sorted(k[5:] for k in tags if k.startswith("test_") and k[5:] not in METRICS),
    ]
    metrics = []
    for metric in names:
        value = tags.get(f"test_{metric}")
        try:
            metrics.append(f"{metric}={float(value):.4f}")
        except (TypeError, ValueError):
            continue
    return [
        f"production model: {model_name} version {production}"
        + (f" (previous: {previous})" if previous else ""),
        f"production metrics (version {production}): " + (", ".join(metrics) or "none recorded"),
    ]


def summarize(
    instance: DagsterInstance,
    tracking_uri: str,
    model_name: str,
    registry_uri: str | None = None,
    prefixed: bool = False,
) -> str:
    """A few lines a person reads after a run: what was read, checked, measured and what serves
    (the latter from the registry: `registry_uri`, default the tracking store). `prefixed`:
    the model is one of a folder's, its assets under its name."""
    from mlflow import MlflowClient

    m = Model(model_name, prefixed)
    lines = _last_run_lines(instance, m)
    raw = _latest_metadata(instance, m.key("raw_data"))
    if raw:
        lines.append(f"rows read: {raw.get('dagster/row_count')} from {raw.get('source')}")
    report = _latest_metadata(instance, m.key("evaluation_report"))
    if report:
        lines.append(
            "test metrics: " + ", ".join(f"{m}={report[m]:.4f}" for m in METRICS if m in report)
        )
    lines += production_lines(MlflowClient(tracking_uri, registry_uri or tracking_uri), model_name)
    lines.append(f"MLflow: {tracking_uri}")
    if registry_uri and registry_uri != tracking_uri:
        lines.append(f"MLflow registry: {registry_uri}")
    return "\n".join(lines)


def main() -> None:
    """Command line entry point."""
    from mlassets.catalog import catalog

    found = catalog(settings.spec_path(), settings.specs_dir())
    with DagsterInstance.get() as instance:
        for m in found.models:
            if m.prefixed:
                print(f"== {m.name}")
            print(
                summarize(
                    instance, settings.tracking_uri(), m.name, settings.registry_uri(), m.prefixed
                )
            )
    for problem in found.problems:
        print(f"== {problem.path}: not served: {problem.error}")


if __name__ == "__main__":
    main()
