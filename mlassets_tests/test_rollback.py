"""`rollback_job` through Dagster: a real instance, a real MLflow SQLite registry, two versions.

Versions are made with the registry's own functions and tiny models, not by training, so the
job's behaviour is tested in seconds: it moves the aliases, records the move on
`production_model`, and refuses (moving nothing) when run again.
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlassets.spec import DEFAULT_SPEC, load_spec

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:Hint. Inferred schema contains integer"),
]

NAME = load_spec(DEFAULT_SPEC).name
METRICS = {1: {"accuracy": 0.91, "f1": 0.85}, 2: {"accuracy": 0.93, "f1": 0.88}}


class Registry:
    """`NAME` with versions 1 and 2; 2 is production and staging, 1 is previous."""

    def __init__(self, root: Path):
        import mlflow
        from mlflow import MlflowClient
        from sklearn.linear_model import LogisticRegression

        from mlassets.ml.registry import (
            STAGING,
            log_pipeline,
            mark_registered,
            promote,
            register,
            set_alias_verified,
        )

        self.uri = f"sqlite:///{root / 'mlflow.db'}"
        mlflow.set_tracking_uri(self.uri)
        mlflow.set_registry_uri(self.uri)
        self.client = MlflowClient(self.uri, self.uri)
        experiment = self.client.create_experiment(NAME, artifact_location=str(root / "mlruns"))
        rng = np.random.default_rng(0)
        X = pd.DataFrame({"a": rng.normal(size=60), "b": rng.normal(size=60)})
        y = (X["a"] + 0.3 * X["b"] > 0).astype(int)
        for version, C in ((1, 0.01), (2, 100.0)):
            model = LogisticRegression(C=C).fit(X, y)
            with mlflow.start_run(experiment_id=experiment) as run:
                info = log_pipeline(model, X)
            tags = {f"test_{k}": f"{v:.6f}" for k, v in METRICS[version].items()}
            mv = register(
                self.client, NAME, info.model_uri, run.info.run_id, tags, model_id=info.model_id
            )
            assert str(mv.version) == str(version)
            mark_registered(self.client, NAME, mv.version)
            set_alias_verified(self.client, NAME, mv.version, STAGING, X, model.predict(X))
            promote(self.client, NAME, mv.version)
        assert self.aliases() == {"production": "2", "staging": "2", "previous": "1"}

    def aliases(self) -> dict[str, str]:
        return {k: str(v) for k, v in self.client.get_registered_model(NAME).aliases.items()}

    def tags(self, version: str) -> dict[str, str]:
        return self.client.get_model_version(NAME, version).tags


@pytest.fixture
def registry(tmp_path, monkeypatch) -> Registry:
    import mlflow

    before = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    # MLflow's SQLite store resolves a `models:/m-...` source through the global tracking URI
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        yield Registry(tmp_path)
    finally:
        mlflow.set_tracking_uri(before[0])
        mlflow.set_registry_uri(before[1])


def rollback(registry: Registry, instance, to_version: object = None):
    """Run the real `rollback_job` in process; never raises on failure."""
    from mlassets.catalog import Model
    from mlassets.jobs import rollback_job
    from mlassets.resources import DatasetResource, ModelRegistry

    config = {} if to_version is None else {"to_version": to_version}
    # the one model of one spec file: unprefixed names, as the code location serves it
    return rollback_job(Model(NAME)).execute_in_process(
        run_config={"ops": {"rollback_production": {"config": config}}},
        instance=instance,
        resources={
            "dataset": DatasetResource(spec_path=str(DEFAULT_SPEC)),
            "registry": ModelRegistry(tracking_uri=registry.uri),
        },
        raise_on_error=False,
    )


def failure(result) -> str:
    """The description the failed step gave (the registry's refusal)."""
    data = result.failure_data_for_node("rollback_production")
    return data.user_failure_data.description


def production_materializations(instance) -> list:
    from dagster import AssetKey

    return list(instance.fetch_materializations(AssetKey("production_model"), limit=10).records)


def test_rollback_job_moves_production_records_it_and_refuses_when_run_again(
    registry, dagster_instance
):
    from dagster import AssetKey

    from mlassets.summary import summarize

    first = rollback(registry, dagster_instance)
    assert first.success
    assert first.output_for_node("rollback_production") == {
        "name": NAME,
        "production": "1",
        "rolled_back_from": "2",
        "staging": "1",
    }
    assert registry.aliases() == {"production": "1", "staging": "1"}
    assert registry.tags("2")["mlassets.status"] == "rolled_back"
    assert registry.tags("2")["mlassets.rolled_back_by"] == first.run_id
    assert registry.tags("1")["mlassets.rolled_back_from"] == "2"

    event = dagster_instance.get_latest_materialization_event(AssetKey("production_model"))
    assert event.run_id == first.run_id
    metadata = {k: v.value for k, v in event.asset_materialization.metadata.items()}
    assert metadata["model_version"] == "1"
    assert metadata["rolled_back_from"] == "2"
    assert metadata["model_uri"] == f"models:/{NAME}@production"

    second = rollback(registry, dagster_instance)
    assert not second.success
    message = failure(second)
    assert "no 'previous' version to roll back to" in message
    assert "production is version 1" in message and "to_version" in message
    assert registry.aliases() == {"production": "1", "staging": "1"}
    assert [r.run_id for r in production_materializations(dagster_instance)] == [first.run_id]

    # the summary reads production from the registry, with that version's own metrics
    lines = summarize(dagster_instance, registry.uri, NAME).splitlines()
    assert f"production model: {NAME} version 1" in lines  # no "(previous: ...)": it was cleared
    assert "production metrics (version 1): accuracy=0.9100, f1=0.8500" in lines
    assert f"run {second.run_id[:8]}: FAILURE" in lines


def test_rollback_job_to_a_chosen_version_and_the_refusal_to_repeat_it(registry, dagster_instance):
    to_one = rollback(registry, dagster_instance, to_version="1")
    assert to_one.success
    assert registry.aliases() == {"production": "1", "staging": "1"}

    again = rollback(registry, dagster_instance, to_version="1")
    assert not again.success
    assert "production is already version 1; nothing to roll back" in failure(again)
    assert registry.aliases() == {"production": "1", "staging": "1"}

    back = rollback(registry, dagster_instance, to_version="2")  # a rolled-back version, chosen
    assert back.success
    assert registry.aliases() == {"production": "2", "staging": "2"}
    assert registry.tags("2")["mlassets.status"] == "registered"
    assert registry.tags("1")["mlassets.status"] == "rolled_back"
    records = production_materializations(dagster_instance)
    assert [r.run_id for r in records] == [back.run_id, to_one.run_id]  # newest first
    versions = [r.asset_materialization.metadata["model_version"].value for r in records]
    assert versions == ["2", "1"]


def test_rollback_job_takes_to_version_as_an_integer_too(registry, dagster_instance):
    """`to_version: 3` in a run config is as good as `"3"` (it was a config type error); a
    value that is no version number is refused by name and moves nothing."""
    to_one = rollback(registry, dagster_instance, to_version=1)
    assert to_one.success
    assert to_one.output_for_node("rollback_production")["production"] == "1"
    assert registry.aliases() == {"production": "1", "staging": "1"}

    back = rollback(registry, dagster_instance, to_version=2)
    assert back.success
    assert registry.aliases() == {"production": "2", "staging": "2"}

    for wrong in (True, 1.5, [1]):
        refused = rollback(registry, dagster_instance, to_version=wrong)
        assert not refused.success
        error = refused.failure_data_for_node("rollback_production").error
        text = "".join(str(e.message) for e in [error, *_causes(error)])
        assert "to_version must be a version number, an integer or a string" in text, wrong
    assert registry.aliases() == {"production": "2", "staging": "2"}


def _causes(error) -> list:
    """The chain of causes of a Dagster `SerializableErrorInfo`."""
    out = []
    while error.cause is not None:
        error = error.cause
        out.append(error)
    return out


def test_rollback_runs_queue_with_their_models_training_runs(registry, dagster_instance, tmp_path):
    """A rollback carries its model's training tag, with the training job's value: the run queue
    (one run per value of that tag, in every profile) never runs it beside a training run of
    that model, which could promote over it."""
    import shutil

    import yaml
    from dagster import DagsterInstance

    from mlassets.catalog import TRAINING_TAG, Model
    from mlassets.jobs import rollback_job, training_job

    for model in (Model(NAME), Model(NAME, prefixed=True)):
        assert rollback_job(model).tags[TRAINING_TAG] == model.ident
        assert training_job(model, []).tags[TRAINING_TAG] == model.ident
    run = rollback(registry, dagster_instance)
    assert run.success
    assert run.dagster_run.tags[TRAINING_TAG] == NAME

    one_per_value = {"key": TRAINING_TAG, "value": {"applyLimitPerUniqueValue": True}, "limit": 1}
    deploy = Path(__file__).resolve().parents[1] / "deploy"
    for profile in ("local", "postgres", "server"):
        config = yaml.safe_load((deploy / profile / "dagster.yaml").read_text())
        limits = config["run_coordinator"]["config"]["tag_concurrency_limits"]
        assert one_per_value in limits, profile
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(deploy / "local" / "dagster.yaml", home / "dagster.yaml")
    with DagsterInstance.from_config(str(home)) as instance:  # the embedded default, as loaded
        queue = instance.run_coordinator.get_run_queue_config()
        assert one_per_value in queue.tag_concurrency_limits
