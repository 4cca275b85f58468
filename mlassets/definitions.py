"""The code location: assets, checks, jobs and resources meet here and nowhere else."""

from collections.abc import Mapping
from typing import Any

from dagster import Definitions, ExecutorDefinition

from mlassets import settings
from mlassets.alerts import alert_sensors
from mlassets.assets.data import raw_data
from mlassets.assets.evaluation import evaluation_report
from mlassets.assets.features import features, splits
from mlassets.assets.monitoring import drift_report, recent_data, scored_batches
from mlassets.assets.registry import production_model, registered_model, staging_model
from mlassets.assets.training import candidate_model
from mlassets.checks.gates import (
    beats_production,
    fairness_gate,
    metric_gates,
    staging_predicts_identically,
)
from mlassets.executors import executor_def
from mlassets.jobs import monitoring_job, rollback_job, training_job
from mlassets.resources import default_resources
from mlassets.schedules import daily_monitoring
from mlassets.sensors import drift_sensor
from mlassets.spec import load_spec

ASSETS = [
    raw_data,
    features,
    splits,
    candidate_model,
    evaluation_report,
    registered_model,
    staging_model,
    production_model,
    recent_data,
    drift_report,
    scored_batches,
]
CHECKS = [metric_gates, beats_production, fairness_gate, staging_predicts_identically]


def build_defs(
    resources: Mapping[str, Any] | None = None, executor: ExecutorDefinition | None = None
) -> Definitions:
    """The Definitions with the given resources and executor (default: the environment's, see
    settings; the executor is `MLASSETS_EXECUTOR`'s, `in_process` unless set: the graph is a
    chain, and one process keeps the frames in memory and imports sklearn and MLflow once).
    The failure-alert sensors are there only when `MLASSETS_ALERT_*` configures them (alerts.py).
    """
    return Definitions(
        assets=ASSETS,
        asset_checks=CHECKS,
        jobs=[training_job, monitoring_job, rollback_job],
        sensors=[drift_sensor, *alert_sensors()],
        schedules=[daily_monitoring],
        resources=dict(resources or default_resources(load_spec(settings.spec_path()))),
        executor=executor or executor_def(),
    )


defs = build_defs()
