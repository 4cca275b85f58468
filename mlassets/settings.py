"""Where things live: the embedded default under `.mlassets/`, overridden by the environment.

`MLASSETS_HOME` (default `./.mlassets`) holds the Dagster home (`<home>/dagster`, as `make` sets
it), the MLflow SQLite database and artifacts, and generated data. The `python -m mlassets.*`
commands set both defaults at start-up (`command_defaults`), so they run from the checkout as
`make` runs them. `DAGSTER_HOME`, `MLFLOW_TRACKING_URI` (`MLFLOW_REGISTRY_URI`),
`MLASSETS_ARTIFACT_ROOT`, `MLASSETS_STORAGE` override their parts; `MLASSETS_SPECS` (a folder of
dataset specs, default the bundled one) or `MLASSETS_SPEC` (one file) say which models it serves.
"""

from __future__ import annotations

import os
from pathlib import Path

# Telemetry off for every library we drive; set before any of them is imported.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
# MLflow refuses to unpickle any model; ours travel as skops with an explicit trusted list.
os.environ.setdefault("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")

# MLflow's own HTTP client settings, shorter than its defaults (7 retries, backoff factor 2, 120 s
# per attempt): with those an unreachable tracking server took 251 s of silent retries to fail.
# With these a refused connection fails in under 10 s (sleeps of 0, 2 and 4 s plus up to 1 s of
# jitter each); a server that drops packets takes up to 4 x 30 s. Longer outages are the job of
# the steps' Dagster RetryPolicy (`mlassets.assets.refusals.MLFLOW_RETRY_POLICY`). A user's own
# values win; MLflow reads them at each request, so setting them before any request is enough.
MLFLOW_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}
for _name, _value in MLFLOW_HTTP_DEFAULTS.items():
    os.environ.setdefault(_name, _value)


def home() -> Path:
    """The project's state folder: `$MLASSETS_HOME` or `./.mlassets`."""
    return Path(os.environ.get("MLASSETS_HOME") or Path.cwd() / ".mlassets").resolve()


def dagster_home() -> Path:
    """`$DAGSTER_HOME`, or `<home>/dagster`: where `make home` puts the Dagster instance."""
    return Path(os.environ.get("DAGSTER_HOME") or home() / "dagster").expanduser().resolve()


def command_defaults() -> dict[str, str]:
    """The homes `make` exports that this process lacks (`MLASSETS_HOME`, `DAGSTER_HOME`, by the
    defaults above): a `python -m mlassets.<command>` entry point sets them at its start, before
    Dagster reads `DAGSTER_HOME`, so the commands run from the checkout as `make` runs them."""
    defaults = {"MLASSETS_HOME": str(home()), "DAGSTER_HOME": str(dagster_home())}
    return {k: v for k, v in defaults.items() if not os.environ.get(k)}


def missing_instance(path: Path | None = None) -> str | None:
    """One line when the Dagster home `path` (default `dagster_home()`) holds no instance yet,
    neither `make home`'s dagster.yaml nor storage of its own; None when it does. Said instead of
    Dagster's traceback, with the command that creates it."""
    path = path or dagster_home()
    if (path / "dagster.yaml").is_file() or (path / "history").is_dir():
        return None
    return f"no Dagster instance in {path} (DAGSTER_HOME) yet: `make demo` creates it"


def tracking_uri() -> str:
    """`$MLFLOW_TRACKING_URI`, or a SQLite database under the home (tracking and registry)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{home() / 'mlflow.db'}"


def registry_uri() -> str | None:
    """`$MLFLOW_REGISTRY_URI` (MLflow's own variable), or None: the registry is the tracking store."""
    return os.environ.get("MLFLOW_REGISTRY_URI") or None


def artifact_root() -> str:
    """Where new MLflow experiments keep artifacts when the client writes them (a database or
    folder tracking store): `$MLASSETS_ARTIFACT_ROOT`, a folder or a URL such as
    `s3://bucket/mlartifacts`, default `<home>/mlartifacts`. A tracking server decides for itself."""
    return os.environ.get("MLASSETS_ARTIFACT_ROOT") or str(home() / "mlartifacts")


def storage_root() -> str:
    """Where asset values live (`$MLASSETS_STORAGE`, default `<home>/storage`): a local folder or
    an fsspec URL; each model's values sit under its own name there."""
    return os.environ.get("MLASSETS_STORAGE") or str(home() / "storage")


def spec_path() -> str | None:
    """`$MLASSETS_SPEC`: one dataset spec, one model under unprefixed names; or None."""
    return os.environ.get("MLASSETS_SPEC") or None


def specs_folder() -> str | None:
    """`$MLASSETS_SPECS` as set (None when unset): the deprecated way to name the models."""
    return os.environ.get("MLASSETS_SPECS") or None


def specs_dir() -> str | None:
    """`$MLASSETS_SPECS`, a folder of dataset specs (one model each, under its name as a key
    prefix); the bundled folder unless `$MLASSETS_SPEC` names one file; None then. Both set is
    an error: which one the user meant is theirs to say."""
    from mlassets.spec import BUNDLED_SPECS, SpecError

    folder = os.environ.get("MLASSETS_SPECS") or None
    if folder and spec_path():
        raise SpecError(
            f"MLASSETS_SPEC={spec_path()} and MLASSETS_SPECS={folder} are both set: "
            "unset one (a file serves one model, a folder one model per spec)"
        )
    if spec_path():
        return None
    return folder or str(BUNDLED_SPECS)


def is_bundled(path: str | Path) -> bool:
    """Whether a spec file or folder is the package's own (its data lives under the home)."""
    from mlassets.spec import BUNDLED_SPECS

    resolved = Path(path).expanduser().resolve()
    return resolved == BUNDLED_SPECS.resolve() or resolved.parent == BUNDLED_SPECS.resolve()


def data_root() -> str | None:
    """Where specs' relative paths resolve: the home for the bundled specs, else each spec's
    own folder (None)."""
    chosen = spec_path() or specs_dir()
    return str(home()) if chosen is None or is_bundled(chosen) else None


def drift_overrides() -> dict:
    """`$MLASSETS_DRIFT` as JSON (e.g. '{"min_rows": 5000}'): DriftConfig fields for monitoring."""
    import json

    raw = os.environ.get("MLASSETS_DRIFT")
    return json.loads(raw) if raw else {}


def sensor_interval() -> int:
    """Seconds between `drift_sensor` ticks: `$MLASSETS_SENSOR_INTERVAL`, default 60."""
    return int(os.environ.get("MLASSETS_SENSOR_INTERVAL", "60"))


def retrain_run_config() -> dict:
    """`$MLASSETS_RETRAIN_CONFIG`: a YAML run config file for the runs `drift_sensor` launches."""
    import yaml

    path = os.environ.get("MLASSETS_RETRAIN_CONFIG")
    return (yaml.safe_load(Path(path).read_text()) or {}) if path else {}


# Executors `MLASSETS_EXECUTOR` may name (mlassets.executors maps each to Dagster's).
EXECUTORS = ("in_process", "multiprocess", "celery", "dask", "k8s_job")


def executor() -> str:
    """`$MLASSETS_EXECUTOR`: how a run's steps execute (default `in_process`); see
    `mlassets.executors`. An unknown name fails the code location's load, naming the variable."""
    name = (os.environ.get("MLASSETS_EXECUTOR") or "in_process").strip()
    if name not in EXECUTORS:
        raise ValueError(
            f"MLASSETS_EXECUTOR={name!r} is not an executor (known: {', '.join(EXECUTORS)})"
        )
    return name
