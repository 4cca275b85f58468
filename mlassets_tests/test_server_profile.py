"""The `server` profile's files and the settings it relies on, without starting a server.

Which tracking URIs make the MLflow client write artifacts itself (so it must be told where),
artifact locations that are URLs kept as given, a registry apart from the tracking store honoured
by the resources, monitoring and the summary, and `deploy/server/` itself: its `profile.env`
sourceable by bash, its `start` script's settings (the environment wins), its `dagster.yaml` a
valid instance. The servers themselves: test_mlflow_server.py and test_s3_values.py.
"""

import os
import subprocess

import pandas as pd
import pytest

from mlassets_tests.test_mlflow_server import PROFILE, profile_env

pytestmark = pytest.mark.unit

DB_STORES = [
    "sqlite:///tmp/mlflow.db",
    "file:///tmp/mlruns",
    "/tmp/mlruns",
    "mlruns",
    "postgresql://u@127.0.0.1:5432/mlflow",
    "postgresql+psycopg2://u@127.0.0.1:5432/mlflow",
    "mysql+pymysql://u:p@127.0.0.1/mlflow",
    "mssql+pyodbc://u:p@db/mlflow",
]
SERVERS = ["http://127.0.0.1:5000", "https://mlflow.example.org", "databricks", "databricks-uc"]


@pytest.mark.parametrize("uri", DB_STORES)
def test_a_database_or_folder_store_is_written_by_the_client(uri):
    from mlassets.resources import client_writes_artifacts

    assert client_writes_artifacts(uri)


@pytest.mark.parametrize("uri", SERVERS)
def test_a_server_decides_where_artifacts_go(uri):
    from mlassets.resources import client_writes_artifacts

    assert not client_writes_artifacts(uri)


@pytest.mark.parametrize(
    "location",
    ["s3://bucket/mlartifacts", "gs://bucket/a", "mlflow-artifacts:/a", "file:///tmp/a"],
)
def test_an_artifact_url_passes_through(location):
    from mlassets.resources import artifact_uri

    assert artifact_uri(location) == location


def test_an_artifact_path_becomes_an_absolute_file_uri(tmp_path, monkeypatch):
    from mlassets.resources import artifact_uri

    monkeypatch.chdir(tmp_path)
    assert artifact_uri("mlartifacts") == (tmp_path / "mlartifacts").as_uri()
    assert artifact_uri(None) is None


@pytest.mark.integration
def test_a_new_experiment_keeps_an_s3_artifact_location(tmp_path):
    """The store records the URL; nothing is written to S3 until a run logs an artifact."""
    from mlflow import MlflowClient

    from mlassets.resources import ensure_experiment

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment_id = ensure_experiment(uri, "fraud_detection", "s3://bucket/mlartifacts")
    experiment = MlflowClient(uri).get_experiment(experiment_id)
    assert experiment.artifact_location == "s3://bucket/mlartifacts"
    assert ensure_experiment(uri, "fraud_detection", "elsewhere") == experiment_id  # kept


def _mlflow_config(resources: dict) -> dict:
    return resources["mlflow"].model_dump()


@pytest.mark.parametrize(
    ("tracking", "artifact_root", "expected"),
    [
        ("postgresql+psycopg2://u@127.0.0.1/mlflow", "s3://bucket/art", "s3://bucket/art"),
        ("mysql+pymysql://u@127.0.0.1/mlflow", None, "{home}/mlartifacts"),
        ("http://127.0.0.1:5000", "s3://bucket/art", None),  # the server's own destination
    ],
)
def test_default_resources_give_the_client_an_artifact_root_only_when_it_writes(
    tracking, artifact_root, expected, tmp_path, monkeypatch
):
    from mlassets.resources import default_resources
    from mlassets.spec import load_spec

    monkeypatch.setenv("MLASSETS_HOME", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking)
    for key in ("MLASSETS_SPEC", "MLASSETS_SPECS", "MLFLOW_REGISTRY_URI", "MLASSETS_ARTIFACT_ROOT"):
        monkeypatch.delenv(key, raising=False)
    if artifact_root:
        monkeypatch.setenv("MLASSETS_ARTIFACT_ROOT", artifact_root)
    config = _mlflow_config(default_resources(load_spec()))
    assert config["tracking_uri"] == tracking
    assert config["artifact_location"] == (expected.format(home=tmp_path) if expected else None)


def _registry_apart(tmp_path) -> tuple[str, str, pd.DataFrame]:
    """A tracking store holding a run with a drift reference, and a registry in another
    database whose `production` version names that run: (tracking, registry, sample)."""
    import mlflow
    from mlflow import MlflowClient

    from mlassets.ml.registry import PRODUCTION, log_reference

    tracking = f"sqlite:///{tmp_path / 'tracking.db'}"
    registry = f"sqlite:///{tmp_path / 'registry.db'}"
    sample = pd.DataFrame({"feature_1": [1.0, 2.0, 3.0], "category": ["a", "b", "a"]})
    mlflow.set_tracking_uri(tracking)
    try:
        experiment = mlflow.create_experiment("apart", (tmp_path / "artifacts").as_uri())
        with mlflow.start_run(experiment_id=experiment) as run:
            log_reference(sample, {"metrics": {"f1": 0.9}, "batches": []})
    finally:
        mlflow.set_tracking_uri(None)
    client = MlflowClient(tracking, registry)
    client.create_registered_model("apart")
    mv = client.create_model_version(
        "apart", f"runs:/{run.info.run_id}/model", run_id=run.info.run_id, tags={"test_f1": "0.9"}
    )
    client.set_registered_model_alias("apart", PRODUCTION, mv.version)
    return tracking, registry, sample


@pytest.mark.integration
def test_a_registry_apart_from_the_tracking_store_is_honoured(tmp_path, monkeypatch):
    from dagster import instance_for_test
    from mlflow import MlflowClient

    from mlassets.ml.monitoring import production
    from mlassets.resources import default_resources
    from mlassets.spec import load_spec
    from mlassets.summary import summarize

    tracking, registry, sample = _registry_apart(tmp_path)

    # monitoring reads production from the registry, its reference from the tracking store
    prod = production(MlflowClient(tracking, registry), "apart")
    assert prod is not None and prod.version == "1"
    pd.testing.assert_frame_equal(prod.reference, sample)
    assert production(MlflowClient(tracking, tracking), "apart") is None

    with instance_for_test() as instance:
        lines = summarize(instance, tracking, "apart", registry_uri=registry).splitlines()
        assert "production model: apart version 1" in lines
        assert "production metrics (version 1): f1=0.9000" in lines
        assert f"MLflow registry: {registry}" in lines
        alone = summarize(instance, tracking, "apart").splitlines()
        assert "production model: none registered for apart" in alone

    # MLFLOW_REGISTRY_URI reaches the registry resource the assets and the sensor use
    monkeypatch.setenv("MLASSETS_HOME", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", registry)
    monkeypatch.delenv("MLASSETS_SPEC", raising=False)
    monkeypatch.delenv("MLASSETS_SPECS", raising=False)
    resource = default_resources(load_spec())["registry"]
    assert resource.registry_uri == registry
    assert str(resource.client().get_model_version_by_alias("apart", "production").version) == "1"


# --- deploy/server/ --------------------------------------------------------------------------


def _bash_env(command: str, env: dict[str, str]) -> dict[str, str]:
    out = subprocess.run(
        ["bash", "-c", f"{command} && env -0"],
        env=env,
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout.decode()
    return dict(item.split("=", 1) for item in out.split("\0") if "=" in item)


def test_profile_env_is_sourceable_by_bash():
    """`set -a; . profile.env` (a shell for `dagster`) gets exactly what the tests read."""
    expected = profile_env()
    got = _bash_env(f"set -a; . {PROFILE / 'profile.env'}", {"PATH": os.environ["PATH"]})
    assert {k: got.get(k) for k in expected} == expected
    assert expected["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql+psycopg2://")
    assert expected["MLFLOW_TRACKING_URI"].startswith("http://127.0.0.1:")
    assert expected["MLASSETS_STORAGE"].startswith("s3://")
    assert expected["MLFLOW_ARTIFACTS_DESTINATION"].startswith("s3://")
    assert expected["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] == "false"
    assert expected["MLFLOW_DISABLE_TELEMETRY"] == "true"


def test_start_takes_the_profile_as_defaults_and_the_environment_wins():
    start = PROFILE / "start"
    assert os.access(start, os.X_OK)
    env = {"PATH": os.environ["PATH"], "MLFLOW_PORT": "5050", "MLASSETS_STORAGE": "s3://mine/v"}
    proc = subprocess.run(
        [str(start), "env"], env=env, capture_output=True, text=True, check=True, timeout=30
    )
    printed = dict(line.split("=", 1) for line in proc.stdout.splitlines())
    assert printed == {**profile_env(), "MLFLOW_PORT": "5050", "MLASSETS_STORAGE": "s3://mine/v"}
    bad = subprocess.run([str(start), "nonsense"], env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "usage:" in bad.stderr


def test_the_profile_dagster_yaml_is_a_valid_instance(tmp_path):
    import shutil

    from dagster import DagsterInstance, QueuedRunCoordinator

    from mlassets.catalog import TRAINING_TAG

    shutil.copy(PROFILE / "dagster.yaml", tmp_path / "dagster.yaml")
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        queue = instance.run_coordinator.get_run_queue_config()
        assert queue.max_concurrent_runs == 2
        # but one training run per model at a time: every training job tags its runs
        # mlassets/training=<model>, limited per unique value
        limits = [limit for limit in queue.tag_concurrency_limits if limit["key"] == TRAINING_TAG]
        assert limits == [
            {"key": TRAINING_TAG, "value": {"applyLimitPerUniqueValue": True}, "limit": 1}
        ]
        assert not instance.telemetry_enabled
