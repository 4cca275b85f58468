"""Print what the last training run did: rows read, checks, test metrics, the production model.

Usage (after `dagster asset materialize`): python -m mlassets.summary
"""

from dagster import AssetKey, DagsterInstance, DagsterRunStatus, RunsFilter
from dagster._core.events import DagsterEventType

from mlassets import settings
from mlassets.ml.evaluation import METRICS
from mlassets.spec import load_spec


def _latest_metadata(instance: DagsterInstance, key: str) -> dict:
    event = instance.get_latest_materialization_event(AssetKey(key))
    if event is None or event.asset_materialization is None:
        return {}
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def summarize(instance: DagsterInstance, tracking_uri: str, model_name: str) -> str:
    """A few lines a person reads after a run: what was read, checked, measured and promoted."""
    from mlflow import MlflowClient

    from mlassets.ml.registry import PREVIOUS, PRODUCTION, alias_version

    lines = []
    runs = instance.get_run_records(RunsFilter(), limit=1)
    if runs:
        run = runs[0].dagster_run
        checks = [
            e.dagster_event.event_specific_data
            for e in instance.all_logs(run.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
        ]
        passed = sum(c.passed for c in checks)
        ok = run.status == DagsterRunStatus.SUCCESS
        lines.append(f"run {run.run_id[:8]}: {run.status.value}")
        lines.append(f"checks passed: {passed}/{len(checks)}")
        for c in checks:
            if not c.passed:
                lines.append(f"  FAILED {c.asset_key.to_user_string()}:{c.check_name}")
        if not ok:
            lines.append("see `make dev` (the Dagster UI) for the failed step and its metadata")
    raw = _latest_metadata(instance, "raw_data")
    if raw:
        lines.append(f"rows read: {raw.get('dagster/row_count')} from {raw.get('source')}")
    report = _latest_metadata(instance, "evaluation_report")
    if report:
        lines.append(
            "test metrics: " + ", ".join(f"{m}={report[m]:.4f}" for m in METRICS if m in report)
        )
    client = MlflowClient(tracking_uri, tracking_uri)
    production = alias_version(client, model_name, PRODUCTION)
    previous = alias_version(client, model_name, PREVIOUS)
    lines.append(
        f"production model: {model_name} version {production}"
        + (f" (previous: {previous})" if previous else "")
        if production
        else f"production model: none registered for {model_name}"
    )
    lines.append(f"MLflow: {tracking_uri}")
    return "\n".join(lines)


def main() -> None:
    """Command line entry point."""
    spec = load_spec(settings.spec_path())
    with DagsterInstance.get() as instance:
        print(summarize(instance, settings.tracking_uri(), spec.name))


if __name__ == "__main__":
    main()
