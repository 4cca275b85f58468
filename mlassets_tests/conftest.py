"""Shared fixtures: a real Dagster instance and a real MLflow SQLite registry in temp folders."""

import contextlib
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")

# Small data and a one-point search keep each graph run to seconds; 6,000 seeded rows are enough
# for the default gates (accuracy >= 0.85, F1 >= 0.80) to pass deterministically.
TEST_ROWS = 6000
FAST_TRAINING = {
    "strategy": "grid",
    "param_grid": {"n_estimators": [40], "max_depth": [12]},
    "cv_folds": 3,
    "n_jobs": 2,
}


def run_config(training: dict | None = None, gates: dict | None = None) -> dict:
    """Run config for training_job: the fast search, optional gate overrides (EvaluationConfig)."""
    ops: dict = {"candidate_model": {"config": training or FAST_TRAINING}}
    if gates:
        ops["evaluation_report"] = {"config": gates}
    return {"ops": ops}


@dataclass
class Env:
    """One isolated world: a Dagster instance, an MLflow registry, a dataset."""

    root: Path
    instance: object
    tracking_uri: str
    spec_path: Path
    data_root: Path
    drift: dict | None = None

    @property
    def landing(self) -> Path:
        return self.data_root / "data" / "landing"

    def resources(self) -> dict:
        from mlassets.config import DriftConfig
        from mlassets.io_managers import ValueStore
        from mlassets.resources import (
            DatasetResource,
            ModelRegistry,
            MonitoringResource,
            mlflow_tracking,
            value_store_path,
        )
        from mlassets.spec import load_spec

        name = load_spec(self.spec_path).name
        return {
            "io_manager": ValueStore(base_path=value_store_path(str(self.root / "storage"), name)),
            "dataset": DatasetResource(
                spec_path=str(self.spec_path), data_root=str(self.data_root)
            ),
            "registry": ModelRegistry(tracking_uri=self.tracking_uri),
            "monitoring": MonitoringResource(
                drift=DriftConfig(**(self.drift or {})),
                retrain_run_config=run_config(),
            ),
            "mlflow": mlflow_tracking.configured(
                {
                    "experiment_name": name,
                    "mlflow_tracking_uri": self.tracking_uri,
                    "artifact_location": str(self.root / "mlartifacts"),
                }
            ),
        }

    def defs(self):
        from mlassets.definitions import build_defs

        return build_defs(self.resources())

    def run(self, job: str = "training_job", config: dict | None = None):
        """Execute a job in process against this world; never raises on failure."""
        job_def = self.defs().resolve_job_def(job)
        return job_def.execute_in_process(
            run_config=config
            if config is not None
            else (run_config() if job == "training_job" else {}),
            instance=self.instance,
            raise_on_error=False,
        )

    def client(self):
        from mlflow import MlflowClient

        return MlflowClient(self.tracking_uri, self.tracking_uri)


def make_env(root: Path, instance, rows: int = TEST_ROWS) -> Env:
    """A world with the bundled fraud spec and `rows` synthetic rows as its source."""
    from mlassets.spec import DEFAULT_SPEC
    from mlassets.synthetic import fraud_frame, write_frame

    data_root = root / "data_root"
    write_frame(fraud_frame(rows, seed=7), data_root / "data" / "transactions.parquet")
    return Env(
        root=root,
        instance=instance,
        tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
        spec_path=DEFAULT_SPEC,
        data_root=data_root,
    )


_URI_KEYS = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
_SESSION_MLFLOW_URIS = {k: os.environ.get(k) for k in _URI_KEYS}


def _restore_mlflow_uris(saved: dict) -> None:
    import sys

    if "mlflow" in sys.modules:
        import mlflow

        mlflow.set_tracking_uri(saved["MLFLOW_TRACKING_URI"])
        mlflow.set_registry_uri(saved["MLFLOW_REGISTRY_URI"])
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(autouse=True)
def _mlflow_uris_restored():
    """`mlflow.set_tracking_uri` / `set_registry_uri` also write `MLFLOW_TRACKING_URI` /
    `MLFLOW_REGISTRY_URI` into `os.environ` (so that subprocesses inherit them), and
    `settings.registry_uri()` reads the latter: without this, one test's store leaks into the
    next test's CLI runs and resources. A test gets back what it started with (its module's
    fixtures may have set them on purpose); a module, what the session started with."""
    saved = {k: os.environ.get(k) for k in _URI_KEYS}
    yield
    _restore_mlflow_uris(saved)


@pytest.fixture(autouse=True, scope="module")
def _mlflow_uris_restored_per_module():
    yield
    _restore_mlflow_uris(_SESSION_MLFLOW_URIS)


@pytest.fixture
def dagster_instance(tmp_path):
    from dagster import instance_for_test

    home = tmp_path / "dagster_home"
    home.mkdir()
    with instance_for_test(temp_dir=str(home)) as instance:
        yield instance


@pytest.fixture
def env(tmp_path, dagster_instance) -> Env:
    return make_env(tmp_path, dagster_instance)


@contextlib.contextmanager
def trained_world(root: Path, rows: int = TEST_ROWS) -> Iterator[tuple[Env, object]]:
    """A world where training_job already put version 1 behind `production`: (env, that run)."""
    from dagster import instance_for_test

    (root / "dagster_home").mkdir()
    with instance_for_test(temp_dir=str(root / "dagster_home")) as instance:
        world = make_env(root, instance, rows)
        result = world.run()
        assert result.success, "baseline training run failed"
        yield world, result


@pytest.fixture(scope="module")
def trained_env(tmp_path_factory):
    """`trained_world`, shared by the tests of a module."""
    with trained_world(tmp_path_factory.mktemp("trained")) as (world, _):
        yield world


NAME = "fraud_detection"


@dataclass
class CliWorld:
    """A home used through the real `dagster` CLI, as a user would (see test_cli.cli_env)."""

    root: Path
    env: dict

    @property
    def source(self) -> Path:
        return Path(self.env["MLASSETS_HOME"]) / "data" / "transactions.parquet"

    def config(self, name: str, ops: dict) -> str:
        path = self.root / f"{name}.yaml"
        import yaml

        path.write_text(yaml.safe_dump({"ops": ops}))
        return str(path)

    def materialize(self, select: str, config: str | None = None, env: dict | None = None):
        from mlassets_tests.test_cli import DAGSTER

        cmd = [DAGSTER, "asset", "materialize", "-m", "mlassets.definitions", "--select", select]
        return subprocess.run(
            cmd + (["-c", config] if config else []),
            cwd=self.root,
            env=env or self.env,
            capture_output=True,
            text=True,
            timeout=600,
        )

    def client(self):
        from mlflow import MlflowClient

        uri = self.env["MLFLOW_TRACKING_URI"]
        return MlflowClient(uri, uri)

    def registry_state(self) -> tuple[list[str], str | None]:
        from mlassets.ml.registry import PRODUCTION, alias_version

        client = self.client()
        versions = sorted(str(v.version) for v in client.search_model_versions(f"name='{NAME}'"))
        return versions, alias_version(client, NAME, PRODUCTION)


def cli_world_with_version_1(root: Path) -> CliWorld:
    """A CLI home where `dagster asset materialize --select '*'` put version 1 in production."""
    from mlassets.synthetic import fraud_frame, write_frame
    from mlassets_tests.test_cli import cli_env

    w = CliWorld(root, cli_env(root, None))
    write_frame(fraud_frame(TEST_ROWS, seed=7), w.source)
    proc = w.materialize("*", w.config("fast", {"candidate_model": {"config": FAST_TRAINING}}))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert w.registry_state() == (["1"], "1")
    return w
