"""The code location: assets, checks, jobs and resources meet here and nowhere else.

One governed pipeline per model (`mlassets.catalog`): the same assets, checks, jobs, sensor and
schedule for every dataset spec, under the model's key prefix when a folder holds several.
"""

import logging
from collections.abc import Mapping
from typing import Any

from dagster import Definitions, ExecutorDefinition

from mlassets.alerts import alert_sensors
from mlassets.assets import data, evaluation, features, monitoring, registry, training
from mlassets.catalog import Model
from mlassets.checks import gates
from mlassets.executors import executor_def
from mlassets.jobs import monitoring_job, rollback_job, training_job
from mlassets.resources import default_resources
from mlassets.schedules import daily_monitoring
from mlassets.sensors import drift_sensor

log = logging.getLogger("mlassets")


def model_definitions(m: Model) -> dict[str, list]:
    """Everything one model is: its assets, gates, three jobs, drift sensor and schedule."""
    assets = [
        a
        for module in (data, features, training, evaluation, registry, monitoring)
        for a in module.build(m)
    ]
    training_run, monitoring_run = training_job(m, assets), monitoring_job(m, assets)
    return {
        "assets": assets,
        "asset_checks": gates.build(m),
        "jobs": [training_run, monitoring_run, rollback_job(m)],
        "sensors": [drift_sensor(m, training_run)],
        "schedules": [daily_monitoring(m, monitoring_run)],
    }


def build_defs(
    resources: Mapping[str, Any] | None = None, executor: ExecutorDefinition | None = None
) -> Definitions:
    """The Definitions with the given resources and executor (default: the environment's, see
    settings; the executor is `MLASSETS_EXECUTOR`'s, `in_process` unless set: the graph is a
    chain, and one process keeps the frames in memory and imports sklearn and MLflow once).
    The models are those of the `dataset` resource's spec file or folder; a spec of the folder
    that cannot be served is logged and shown as a failing `<file>/dataset_spec` asset, and the
    others load. The failure-alert sensors are there only when `MLASSETS_ALERT_*` configures
    them (alerts.py).
    """
    resources = dict(resources or default_resources())
    found = resources["dataset"].catalog()
    parts: dict[str, list] = {"assets": [], "asset_checks": [], "jobs": [], "schedules": []}
    parts["sensors"] = list(alert_sensors())
    for m in found.models:
        for kind, defs in model_definitions(m).items():
            parts[kind] += defs
    for problem in found.problems:
        log.warning("mlassets: a spec is not served (the others are): %s", problem.error)
        parts["assets"].append(data.build_problem(problem))
    return Definitions(**parts, resources=resources, executor=executor or executor_def())


defs = build_defs()
