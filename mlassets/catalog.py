"""The models a code location serves: one governed pipeline per dataset spec.

`MLASSETS_SPEC` (one file) gives one model under today's names (`raw_data`, `training_job`);
`MLASSETS_SPECS` (a folder, by default the bundled one) gives one model per `*.yaml` file, each
under the key prefix of its name (`fraud_detection/raw_data`) with jobs, sensor and schedule
named after it (`fraud_detection_training_job`). A spec that cannot be used is kept as a
`Problem`: the others load, and the code location shows it by its file.
"""

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Op tags that tell a step which model it belongs to (the same functions serve every model).
MODEL_TAG = "mlassets/model"
PREFIXED_TAG = "mlassets/prefixed"
# A component's model also names its spec file, key prefix and drift settings on its steps: a
# step reads its spec from the file its component named, not by searching a folder.
SPEC_TAG = "mlassets/spec"
PREFIX_TAG = "mlassets/key_prefix"
DRIFT_TAG = "mlassets/drift"
# The monitoring schedule of a model whose component does not set one (the seed checked daily).
DAILY_AT_SIX = "0 6 * * *"
# Run tag of every training job: the run queue serialises training runs per model on it.
TRAINING_TAG = "mlassets/training"


def dagster_name(name: str) -> str:
    """A spec name as Dagster names things (`[A-Za-z0-9_]`): key prefixes, jobs, sensors."""
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


@dataclass(frozen=True)
class Settings:
    """A model's Dagster settings (a `TabularModel` component's attributes; the environment's
    defaults for a model found through `MLASSETS_SPECS`)."""

    schedule: str = DAILY_AT_SIX
    sensor_interval: int | None = None  # None: `$MLASSETS_SENSOR_INTERVAL`, default 60
    drift: dict[str, Any] = field(default_factory=dict)  # DriftConfig fields over the resource's
    retrain: dict[str, Any] | None = None  # the retraining runs' run config (None: the resource's)
    owners: tuple[str, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Model:
    """One model's names in the code location: its spec's `name`, and whether its assets sit
    under that name as a key prefix (a folder of specs) or at the top level (one spec). A
    component's model also carries its spec file, its key prefix and its settings."""

    name: str
    prefixed: bool = False
    spec_path: str | None = None
    key_prefix: str | None = None
    settings: Settings = field(default_factory=Settings, compare=False)

    @property
    def ident(self) -> str:
        return self.key_prefix or dagster_name(self.name)

    @property
    def prefix(self) -> list[str]:
        return [self.ident] if self.prefixed else []

    def key(self, asset: str):
        """The asset key of one of this model's assets."""
        from dagster import AssetKey

        return AssetKey([*self.prefix, asset])

    def op(self, asset: str) -> str:
        """The step (op) name of one of this model's assets: what run config's `ops` names."""
        return "__".join([*self.prefix, asset])

    def group(self, base: str) -> str:
        """An asset group of this model (`data`, or `<name>_data`): in the UI's lineage and
        catalog each model's groups are its own, never mixed with another model's."""
        return f"{self.ident}_{base}" if self.prefixed else base

    def job(self, base: str) -> str:
        """A job, sensor or schedule of this model: `training_job` or `<name>_training_job`."""
        return f"{self.ident}_{base}" if self.prefixed else base

    @property
    def tags(self) -> dict[str, str]:
        tags = {MODEL_TAG: self.name, PREFIXED_TAG: str(self.prefixed).lower()}
        if self.spec_path:
            tags[SPEC_TAG] = self.spec_path
        if self.key_prefix:
            tags[PREFIX_TAG] = self.key_prefix
        if self.settings.drift:
            tags[DRIFT_TAG] = json.dumps(self.settings.drift, sort_keys=True)
        return tags

    @classmethod
    def from_tags(cls, tags) -> "Model":
        drift = json.loads(tags[DRIFT_TAG]) if DRIFT_TAG in tags else {}
        return cls(
            tags[MODEL_TAG],
            tags.get(PREFIXED_TAG) == "true",
            spec_path=tags.get(SPEC_TAG),
            key_prefix=tags.get(PREFIX_TAG),
            settings=Settings(drift=drift),
        )

    def run_config_for(self, ops: dict) -> dict:
        """Run config `ops` written for any model (`raw_data`, `candidate_model`) or for this one
        (`fraud_detection__raw_data`) as this model's step names; other models' entries dropped."""
        mine = self.op("")
        found = {}
        for key, value in ops.items():
            if not self.prefixed or key.startswith(mine):
                found[key] = value
            elif "__" not in key:
                found.setdefault(self.op(key), value)
        return found


@dataclass(frozen=True)
class Problem:
    """A spec file that cannot be served, and why (the loader's message, naming its key)."""

    path: Path
    error: str
    name: str | None = None  # a component's folder (each holds its own `spec.yaml`)

    @property
    def ident(self) -> str:
        """By the component's folder, else the whole file name (`broken_yaml`: `x.yaml` and
        `x.yml` are two problems)."""
        return dagster_name(self.name or self.path.name)


@dataclass(frozen=True)
class Catalog:
    models: list[Model]
    problems: list[Problem]


def model_of(context) -> Model:
    """The model of the step `context` runs (an asset's, a check's or an op's context)."""
    op_def = getattr(context, "op_def", None)
    if op_def is None:  # an asset check's context
        op_def = context.op_execution_context.op_def
    return Model.from_tags(op_def.tags)


def catalog(spec_path: str | None, specs_dir: str | None) -> Catalog:
    """The models of one spec file (unprefixed), or of every `*.yaml` in a folder (prefixed).
    Files whose names are one model's (the same `name`, or names that are the same as Dagster
    names) are all problems: which file is the model is the user's to say, not the file order's.
    A folder with no spec at all is an error (nothing would load, silently)."""
    from mlassets.spec import SpecError, load_spec, spec_files

    if not specs_dir:
        return Catalog([Model(load_spec(spec_path).name)], [])
    problems: list[Problem] = []
    by_ident: dict[str, list[tuple[Path, str]]] = {}
    for path in spec_files(specs_dir):
        try:
            name = load_spec(path).name
        except SpecError as e:
            problems.append(Problem(path, str(e)))
            continue
        by_ident.setdefault(dagster_name(name), []).append((path, name))
    models = []
    for found in by_ident.values():
        if len(found) == 1:
            models.append(Model(found[0][1], prefixed=True))
            continue
        files = ", ".join(str(p) for p, _ in found)
        for path, name in found:
            problems.append(
                Problem(
                    path,
                    f"dataset spec {path}: model name {name!r} is also the name in {files} "
                    "(each spec in a folder needs its own `name`; none of them is served)",
                )
            )
    return Catalog(sorted(models, key=lambda m: m.ident), problems)
