"""Print, a section per model, what its last training run did and which version serves and why.

The run lines (status, checks, rows read, test metrics) are a display of the latest training run.
What serves comes from the registry itself, never from that run, which may have trained a model
that was never promoted or been followed by a rollback: the version behind `production`, the
metrics tagged on it when it was registered, and its own tags saying how it got there (promoted
over the version before it, or rolled back to from a later one, by which run). When a training
run of the model after that version failed or was refused, a line says production was kept and
why, from that run's failed checks (else its failed steps). Models come in the README's order:
the bundled fraud spec's model first (`make demo` trains it first), then the others by name.

Usage (after `make demo`, from the checkout): python -m mlassets.summary
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from mlassets import settings
from mlassets.catalog import TRAINING_TAG, Model

if TYPE_CHECKING:
    from dagster import DagsterInstance

# The version tag naming the Dagster run that registered it (assets/registry.py).
RUN_TAG = "dagster_run_id"
ASSET_JOB = "__ASSET_JOB"


def _latest_metadata(instance: DagsterInstance, key) -> dict:
    event = instance.get_latest_materialization_event(key)
    if event is None or event.asset_materialization is None:
        return {}
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def _last_run_lines(instance: DagsterInstance, m: Model) -> list[str]:
    """The latest run of the instance (of the model's training job when a folder holds several
    models): its status and its asset checks (a display only)."""
    from dagster import DagsterEventType, DagsterRunStatus, RunsFilter

    # the training job's runs: its rollback job carries the same tag (one queue per model)
    runs = instance.get_run_records(
        RunsFilter(job_name=m.job("training_job"), tags={TRAINING_TAG: m.ident})
        if m.prefixed
        else RunsFilter(),
        limit=1,
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


def _root_message(error) -> str:
    """The innermost cause's message (Dagster wraps a step's exception in its own)."""
    while error is not None and getattr(error, "cause", None) is not None:
        error = error.cause
    if error is None:
        return ""
    kind, _, rest = error.message.partition(": ")
    # "<module path of Failure>: why" says why
    return (
        rest if rest and error.cls_name and kind.endswith(error.cls_name) else error.message
    ).strip()


def run_failures(instance: DagsterInstance, run_id: str) -> list[str]:
    """Why a run did not get through, one short text each: its failed checks with their
    descriptions (the gate's figures), else its failed steps' messages."""
    from dagster import DagsterEventType

    from mlassets.ml.bounded import SAMPLE_SIZE, VALUE_BYTES, clip

    evaluations = [
        entry.asset_check_evaluation
        for entry in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
    ]
    found = [
        f"{c.asset_key.to_user_string()}:{c.check_name} failed"
        + (f" ({clip(c.description, VALUE_BYTES)})" if c.description else "")
        for c in evaluations
        if not c.passed
    ]
    if not found:
        found = [
            f"step {entry.step_key} failed: "
            + clip(_root_message(entry.dagster_event.step_failure_data.error), VALUE_BYTES)
            for entry in instance.all_logs(run_id, of_type=DagsterEventType.STEP_FAILURE)
        ]
    more = len(found) - SAMPLE_SIZE
    return found[:SAMPLE_SIZE] + ([f"and {more} more"] if more > 0 else [])


def gate_advice(instance: DagsterInstance, run_id: str) -> str | None:
    """The block `evaluation_report` wrote when gates failed in this run (each failed gate's
    figure against its limit, and the YAML that would accept the model), or None."""
    from dagster import DagsterEventType

    for entry in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION):
        mat = entry.asset_materialization
        if mat is not None and "gate_advice" in mat.metadata:
            return str(mat.metadata["gate_advice"].value).strip().strip("`").strip()
    return None


def serving_line(client, model_name: str, version: str, tags: dict) -> str:
    """Why `version` serves, from its own tags: rolled back to (from which version, by which
    run: the tags the rollback left on the version it replaced), else promoted."""
    from mlassets.ml.registry import PROMOTED_FROM_TAG, ROLLED_BACK_BY_TAG, ROLLED_BACK_FROM_TAG

    source = tags.get(ROLLED_BACK_FROM_TAG)
    if source:
        by = client.get_model_version(model_name, source).tags.get(ROLLED_BACK_BY_TAG)
        return f"version {version} serves since a rollback from version {source}" + (
            f" by run {by[:8]}" if by else ""
        )
    replaced = tags.get(PROMOTED_FROM_TAG)
    how = {None: "its promotion", "none": "its promotion, the model's first"}.get(
        replaced, f"its promotion over version {replaced}"
    )
    trained = tags.get(RUN_TAG)
    return f"version {version} serves since {how}" + (
        f" (trained by run {trained[:8]})" if trained else ""
    )


def production_lines(client, model_name: str) -> list[str]:
    """Which version serves, the one before it, why it serves and its own registered test
    metrics: all from the registry."""
    from mlassets.ml.evaluation import METRICS
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
        serving_line(client, model_name, production, tags),
        f"production metrics (version {production}): " + (", ".join(metrics) or "none recorded"),
    ]


def _is_training(run, m: Model) -> bool:
    """A run that trains `m`: its training job (tagged; its rollback job carries the same tag,
    for the run queue, and trains nothing), or, for one spec, an `__ASSET_JOB` run
    (`dagster asset materialize`) whose selection holds its candidate_model."""
    if run.tags.get(TRAINING_TAG) == m.ident and run.job_name != m.job("rollback_job"):
        return True
    return (
        not m.prefixed
        and run.job_name == ASSET_JOB
        and (run.asset_selection is None or m.key("candidate_model") in run.asset_selection)
    )


def kept_lines(instance: DagsterInstance, client, m: Model, model_name: str) -> list[str]:
    """When the model's newest training run came after the version in production (after its
    registration, or after the rollback to it) and did not put a version there: say that
    production was kept, and why, from that run's failures; or that it is still going."""
    from datetime import UTC, datetime

    from dagster import RunsFilter

    from mlassets.ml.registry import (
        PRODUCTION,
        ROLLED_BACK_BY_TAG,
        ROLLED_BACK_FROM_TAG,
        alias_version,
    )
    from mlassets.ml.status import ROLLED_BACK, STATUS_TAG

    production = alias_version(client, model_name, PRODUCTION)
    if production is None:  # nothing to keep
        return []
    version = client.get_model_version(model_name, production)
    since = datetime.fromtimestamp(version.creation_timestamp / 1000, tz=UTC)
    source = version.tags.get(ROLLED_BACK_FROM_TAG)
    rollback = source and client.get_model_version(model_name, source).tags.get(ROLLED_BACK_BY_TAG)
    record = rollback and instance.get_run_record_by_id(rollback)
    if record:
        since = max(since, record.create_timestamp)
    filters = [RunsFilter(tags={TRAINING_TAG: m.ident}, created_after=since)]
    if not m.prefixed:
        filters.append(RunsFilter(job_name=ASSET_JOB, created_after=since))
    records = [r for f in filters for r in instance.get_run_records(f, limit=20)]
    records = [
        r
        for r in records
        if _is_training(r.dagster_run, m) and r.dagster_run.run_id != version.tags.get(RUN_TAG)
    ]
    if not records:
        return []
    run = max(records, key=lambda r: r.create_timestamp).dagster_run
    if rollback and any(  # its version was promoted, then rolled back: the rollback line says so
        v.tags.get(RUN_TAG) == run.run_id and v.tags.get(STATUS_TAG) == ROLLED_BACK
        for v in client.search_model_versions(f"name='{model_name}'")
    ):
        return []
    where = f"training run {run.run_id[:8]} ({run.job_name})"
    if not run.is_finished:
        return [
            f"{where} is {run.status.value}: version {version.version} serves unless it promotes"
        ]
    # a retrain that kept production says so itself (`registered_model`); else its failures
    why = run.tags.get("mlassets/outcome") or (
        "; ".join(run_failures(instance, run.run_id)) or "no failed check or step recorded"
    )
    return [
        f"production kept at version {version.version}: {where} ended {run.status.value} "
        f"without promoting: {why}"
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

    from mlassets.ml.evaluation import METRICS

    m = Model(model_name, prefixed)
    lines = _last_run_lines(instance, m)
    raw = _latest_metadata(instance, m.key("raw_data"))
    if raw:
        lines.append(f"rows read: {raw.get('dagster/row_count')} from {raw.get('source')}")
    report = _latest_metadata(instance, m.key("evaluation_report"))
    if report:
        lines.append(
            "test metrics: " + ", ".join(f"{k}={report[k]:.4f}" for k in METRICS if k in report)
        )
    client = MlflowClient(tracking_uri, registry_uri or tracking_uri)
    lines += production_lines(client, model_name)
    lines += kept_lines(instance, client, m, model_name)
    lines.append(f"MLflow: {tracking_uri}")
    if registry_uri and registry_uri != tracking_uri:
        lines.append(f"MLflow registry: {registry_uri}")
    return "\n".join(lines)


def ordered(models: list[Model]) -> list[Model]:
    """The README's order: the bundled fraud spec's model first (the demo's first run), then
    the others as the catalog gives them (by name)."""
    from mlassets.spec import DEFAULT_SPEC, load_spec

    first = load_spec(DEFAULT_SPEC).name
    return sorted(models, key=lambda m: m.name != first)


def main() -> None:
    """Command line entry point."""
    import sys

    from dagster import DagsterInstance

    from mlassets.catalog import catalog

    missing = settings.missing_instance()
    if missing:
        sys.exit(missing)
    found = catalog(settings.spec_path(), settings.specs_dir())
    with DagsterInstance.get() as instance:
        for m in ordered(found.models):
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
    # process start-up: the homes `make` exports, before Dagster reads them
    os.environ.update(settings.command_defaults())
    main()
