"""`mlassets.TabularModel`: one governed model as a Dagster Component.

A `defs.yaml` in a project's `defs/` folder names a dataset spec and the model's Dagster settings;
`build_defs` loads the spec once (the guarded loader) and returns that model's assets, checks,
jobs, sensor and schedule. A spec or attribute that cannot be used becomes the failing
`<file>/dataset_spec` asset of that file alone: the other models still load.
"""

import re
from pathlib import Path
from typing import Any

import dagster as dg
from dagster.components import Scaffolder, ScaffoldRequest
from pydantic import Field

from mlassets.catalog import DAILY_AT_SIX, Model, Problem, Settings, dagster_name

# Asset tag keys and values as Dagster accepts them (letters, digits, `-`, `_`, `.`; 63 long).
_TAG = re.compile(r"^[A-Za-z0-9_.-]{1,63}$")

DEFS_TEMPLATE = """\
type: mlassets.TabularModel
attributes:
  # The dataset spec, relative to this folder (spec.yaml beside this file is a template).
  spec: ./spec.yaml
  # Everything below is optional; the values shown are the defaults.
  # key_prefix: {name}            # asset key prefix, job and sensor names (default: the spec's name)
  # monitoring_schedule: "0 6 * * *"   # cron (UTC) of {name}_daily_monitoring
  # sensor_interval_seconds: 60   # between drift_sensor ticks ($MLASSETS_SENSOR_INTERVAL)
  # drift: {{min_rows: 500}}        # DriftConfig fields over the code location's ($MLASSETS_DRIFT)
  # retrain: {{ops: {{}}}}            # run config of the runs the drift sensor launches
  # owners: [team:ml]
  # tags: {{domain: payments}}
"""

SPEC_TEMPLATE = """\
# A dataset spec: what the table holds and how to judge it (docs/spec-reference.md lists every
# key). Relative paths resolve against this file's folder.
name: {name}
source: data/{name}.parquet          # CSV or Parquet, a local path or an fsspec URL
# landing: data/landing             # new batches the drift sensor watches
# labels: data/labels               # (id, label) files that arrive after their rows
label: {{column: target, positive: 1}}
id: row_id
# sensitive: [group]                # judged by the fairness gate, never a feature
min_rows: 1000
columns:
  row_id: {{type: integer, nullable: false, unique: true}}
  amount: {{type: float, nullable: false, min: 0}}
  channel: {{type: category, values: [web, app]}}
  target: {{type: integer, nullable: false, values: [0, 1]}}
features:
  numeric: [amount]
  categorical: [channel]
"""


class TabularModelScaffolder(Scaffolder):
    """`dg scaffold defs mlassets.TabularModel models/<name>`: a defs.yaml and a commented
    template spec named after the folder."""

    def scaffold(self, request: ScaffoldRequest) -> None:
        folder = request.target_path
        folder.mkdir(parents=True, exist_ok=True)
        name = dagster_name(folder.name)
        (folder / "defs.yaml").write_text(DEFS_TEMPLATE.format(name=name))
        spec = folder / "spec.yaml"
        if not spec.exists():
            spec.write_text(SPEC_TEMPLATE.format(name=name))


@dg.scaffold_with(TabularModelScaffolder)
class TabularModel(dg.Component, dg.Resolvable, dg.Model):
    """One governed model: validate, train, evaluate, register, promote and monitor the table its
    dataset spec describes, with its own schedule, sensor interval and drift thresholds."""

    spec: str = Field(description="The dataset spec (YAML), relative to this component's folder.")
    key_prefix: str | None = Field(
        default=None,
        description="Asset key prefix and the prefix of its jobs, sensor and schedule "
        "(default: the spec's `name`, as Dagster names things).",
    )
    monitoring_schedule: str = Field(
        default=DAILY_AT_SIX, description="Cron (UTC) of the model's monitoring schedule."
    )
    sensor_interval_seconds: int | None = Field(
        default=None,
        description="Seconds between drift_sensor ticks (default $MLASSETS_SENSOR_INTERVAL or 60).",
    )
    drift: dict[str, Any] = Field(
        default_factory=dict,
        description="DriftConfig fields (e.g. min_rows, window_batches) over the code location's.",
    )
    retrain: dict[str, Any] | None = Field(
        default=None,
        description="Run config of the training runs the drift sensor launches "
        "(default $MLASSETS_RETRAIN_CONFIG).",
    )
    owners: list[str] = Field(default_factory=list, description="Owners of the model's assets.")
    tags: dict[str, str] = Field(default_factory=dict, description="Tags on the model's assets.")

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        path = (Path(context.path) / self.spec).resolve()
        from mlassets.definitions import model_definitions

        try:
            m = self.declared_model(path)
            # Dagster's own checks (a cron that is not one) refuse the schedule as it is built
            return dg.Definitions(**model_definitions(m))
        except (ValueError, dg.DagsterInvalidDefinitionError) as e:  # SpecError, ValidationError
            return problem_defs(Problem(path, str(e), name=Path(context.path).name))

    def declared_model(self, path: Path) -> Model:
        """The model this component declares, every attribute checked (the error names the spec
        file and the attribute)."""
        from mlassets.config import DriftConfig
        from mlassets.spec import load_spec

        spec = load_spec(path)
        where = f"component {path.parent}: attribute"
        prefix = self.key_prefix
        if prefix is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", prefix):
            raise ValueError(f"{where} key_prefix {prefix!r} is not a Dagster name ([A-Za-z0-9_])")
        if self.sensor_interval_seconds is not None and self.sensor_interval_seconds < 1:
            raise ValueError(f"{where} sensor_interval_seconds must be at least 1")
        try:
            DriftConfig(**self.drift)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{where} drift: {_first_error(e)}") from None
        bad = [f"{k}={v}" for k, v in self.tags.items() if not (_TAG.match(k) and _TAG.match(v))]
        if bad:
            raise ValueError(f"{where} tags: not a Dagster tag: {', '.join(bad[:5])}")
        return Model(
            spec.name,
            prefixed=True,
            spec_path=str(path),
            key_prefix=prefix,
            settings=Settings(
                schedule=self.monitoring_schedule,
                sensor_interval=self.sensor_interval_seconds,
                drift=dict(self.drift),
                retrain=self.retrain,
                owners=tuple(self.owners),
                tags=dict(self.tags),
            ),
        )


def _first_error(e: Exception) -> str:
    """pydantic's first complaint in one line (the field and why), or the error itself."""
    errors = getattr(e, "errors", None)
    if callable(errors):
        first = errors()[0]
        return f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
    return str(e)


def problem_defs(problem: Problem) -> dg.Definitions:
    """A spec that cannot be served, as the failing `<file>/dataset_spec` asset (logged)."""
    import logging

    from mlassets.assets import data

    logging.getLogger("mlassets").warning(
        "mlassets: a model is not served (the others are): %s", problem.error
    )
    return dg.Definitions(assets=[data.build_problem(problem)])
