"""The code location: assets, checks, jobs and resources meet here and nowhere else.

One governed pipeline per model (`mlassets.catalog`): the same assets, checks, jobs, sensor and
schedule for every dataset spec, under the model's key prefix when a folder holds several.
"""

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dagster import Definitions, ExecutorDefinition

from mlassets import settings
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
    resources: Mapping[str, Any] | None = None,
    executor: ExecutorDefinition | None = None,
    defs_module: str | None = None,
) -> Definitions:
    """The Definitions with the given resources and executor (default: the environment's, see
    settings; the executor is `MLASSETS_EXECUTOR`'s, `in_process` unless set: the graph is a
    chain, and one process keeps the frames in memory and imports sklearn and MLflow once).

    The models are the `mlassets.TabularModel` components of `defs_module`'s folder (default
    `mlassets.defs`, the project's own). Deprecated for one release: with `MLASSETS_SPECS` or
    `MLASSETS_SPEC` set, or `resources` given, they are the `dataset` resource's spec folder or
    file instead. Either way a model that cannot be served is logged and shown as a failing
    `<file>/dataset_spec` asset, and the others load. The failure-alert sensors are there only
    when `MLASSETS_ALERT_*` configures them (alerts.py).
    """
    from_environment = resources is not None or settings.spec_path() or settings.specs_folder()
    resources = dict(resources or default_resources())
    parts: dict[str, list] = {"assets": [], "asset_checks": [], "jobs": [], "schedules": []}
    parts["sensors"] = list(alert_sensors())
    shared = Definitions(**parts, resources=resources, executor=executor or executor_def())
    if defs_module is None and from_environment:
        return Definitions.merge(shared, environment_models(resources["dataset"]))
    return Definitions.merge(shared, component_models(defs_module or "mlassets.defs"))


def component_models(defs_module: str) -> Definitions:
    """The models of a defs folder: each `TabularModel` component's own definitions."""
    import importlib

    from dagster.components.core.component_tree import ComponentTree

    module = importlib.import_module(defs_module)
    root = Path(module.__file__).parent
    tree = ComponentTree.from_module(defs_module=module, project_root=root.parent.parent)
    return tree.build_defs()


def environment_models(dataset) -> Definitions:
    """The models of `MLASSETS_SPECS` / `MLASSETS_SPEC` (the `dataset` resource's), deprecated:
    declare each as a `TabularModel` component instead."""
    if settings.spec_path() or settings.specs_folder():
        log.warning(
            "mlassets: MLASSETS_SPECS / MLASSETS_SPEC are deprecated and go in the next release: "
            "declare each model as a component (`dg scaffold defs mlassets.TabularModel "
            "models/<name>`, then point its `spec:` at the file)"
        )
    found = dataset.catalog()
    parts: dict[str, list] = {"assets": [], "asset_checks": [], "jobs": [], "schedules": []}
    parts["sensors"] = []
    for m in found.models:
        for kind, defs in model_definitions(m).items():
            parts[kind] += defs
    for problem in found.problems:
        log.warning("mlassets: a spec is not served (the others are): %s", problem.error)
        parts["assets"].append(data.build_problem(problem))
    return Definitions(**parts)


defs = build_defs()
