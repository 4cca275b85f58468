"""The registry against a real MLflow SQLite store in a temp folder (no mocks)."""

import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from mlassets.ml.data import target
from mlassets.ml.features import input_frame
from mlassets.ml.registry import (
    PREVIOUS,
    PRODUCTION,
    STAGING,
    RegistryError,
    alias_version,
    load_reference,
    log_pipeline,
    log_reference,
    predictions_match,
    promote,
    register,
    rollback,
    set_alias_verified,
)
from mlassets.ml.training import build_pipeline, make_estimator

pytestmark = pytest.mark.filterwarnings("ignore:Hint. Inferred schema contains integer")

TAGS = {"data_fingerprint": "0123456789abcdef", "strategy": "fixed"}


def fit(spec, X, y, seed):
    estimator = make_estimator("random_forest", {"n_estimators": 5, "max_depth": 4}, seed=seed)
    return build_pipeline(spec.numeric_inputs, spec.features.categorical, estimator).fit(X, y)


class World:
    """A tracking store with two logged Pipelines (two runs) to register under any name."""

    def __init__(self, root: Path, spec, featured: pd.DataFrame):
        import mlflow
        from mlflow import MlflowClient

        self.root = root
        self.uri = f"sqlite:///{root / 'mlflow.db'}"
        mlflow.set_tracking_uri(self.uri)
        mlflow.set_registry_uri(self.uri)
        self.client = MlflowClient(self.uri, self.uri)
        self.artifacts = root / "artifacts"
        experiment = self.client.create_experiment("unit", artifact_location=str(self.artifacts))
        X, y = input_frame(featured, spec), target(featured, spec)
        self.X = X.head(200).reset_index(drop=True)
        self.models, self.infos, self.runs = [], [], []
        for seed in (1, 2):
            model = fit(spec, X, y, seed)
            with mlflow.start_run(experiment_id=experiment) as run:
                self.infos.append(log_pipeline(model, X))
                if seed == 1:
                    log_reference(
                        featured.head(50),
                        {"metrics": {"f1": 0.9}, "fingerprint": "abc"},
                    )
            self.models.append(model)
            self.runs.append(run.info.run_id)

    def expected(self, i: int) -> np.ndarray:
        return self.models[i].predict(self.X)

    def register_both(self, name: str) -> list[str]:
        return [
            str(register(self.client, name, info.model_uri, run_id, TAGS).version)
            for info, run_id in zip(self.infos, self.runs, strict=True)
        ]


@pytest.fixture(scope="module")
def world(tmp_path_factory, _featured, spec):
    import mlflow

    before = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    with pytest.MonkeyPatch.context() as mp:
        root = tmp_path_factory.mktemp("registry")
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        mp.setenv("MLFLOW_REGISTRY_URI", f"sqlite:///{root / 'mlflow.db'}")
        try:
            yield World(root, spec, _featured)
        finally:
            if mlflow.active_run():
                mlflow.end_run()
            mlflow.set_tracking_uri(before[0])
            mlflow.set_registry_uri(before[1])


@pytest.fixture
def name(world) -> str:
    """A fresh registered model holding versions 1 and 2."""
    model_name = f"m_{uuid.uuid4().hex[:8]}"
    assert world.register_both(model_name) == ["1", "2"]
    return model_name


def aliases(world, name) -> dict[str, str]:
    return {k: str(v) for k, v in world.client.get_registered_model(name).aliases.items()}


def test_the_two_models_predict_differently(world):
    # otherwise a wrong-version load could pass predictions_match by accident
    assert (world.expected(0) != world.expected(1)).any()


def test_register_creates_the_model_and_a_ready_version_with_its_tags(world, name):
    model = world.client.get_registered_model(name)
    assert "mlassets" in model.description
    mv = world.client.get_model_version(name, "1")
    assert mv.status == "READY"
    assert {k: mv.tags[k] for k in TAGS} == TAGS
    assert mv.run_id == world.runs[0]
    assert world.client.get_model_version(name, "2").run_id == world.runs[1]


def test_the_model_is_logged_in_skops_format_under_the_experiments_artifact_location(world):
    from mlflow.models import Model

    mlmodel = Model.load(world.infos[0].model_uri)
    assert mlmodel.flavors["sklearn"]["serialization_format"] == "skops"
    assert mlmodel.signature is not None
    files = list(world.artifacts.rglob("MLmodel"))
    assert len(files) == 2
    for path in files:
        flavor = yaml.safe_load(path.read_text())["flavors"]["sklearn"]
        assert flavor["serialization_format"] == "skops"
        assert list(path.parent.glob("*.pkl")) == []


def test_a_registered_version_predicts_exactly_like_the_in_memory_model(world, name):
    check = predictions_match(f"models:/{name}/1", world.X, world.expected(0))
    assert check == {"model_uri": f"models:/{name}/1", "rows": 200, "mismatched": 0}


def test_predictions_match_counts_mismatches(world, name):
    wrong = world.expected(0).copy()
    wrong[:7] = 1 - wrong[:7]
    assert predictions_match(f"models:/{name}/1", world.X, wrong)["mismatched"] == 7
    short = world.expected(0)[:10]
    assert predictions_match(f"models:/{name}/1", world.X, short)["mismatched"] == 10


def test_set_alias_verified_moves_the_alias(world, name):
    check = set_alias_verified(world.client, name, "1", STAGING, world.X, world.expected(0))
    assert check["mismatched"] == 0
    assert alias_version(world.client, name, STAGING) == "1"
    set_alias_verified(world.client, name, "2", STAGING, world.X, world.expected(1))
    assert alias_version(world.client, name, STAGING) == "2"
    assert aliases(world, name) == {STAGING: "2"}


def test_set_alias_verified_refuses_a_mispredicting_version_and_leaves_the_alias(world, name):
    set_alias_verified(world.client, name, "1", STAGING, world.X, world.expected(0))
    # version 2 checked against version 1's predictions: the wrong `expected`
    with pytest.raises(RegistryError) as info:
        set_alias_verified(world.client, name, "2", STAGING, world.X, world.expected(0))
    message = str(info.value)
    assert f"{name} version 2 mispredicts" in message and "'staging' not moved" in message
    assert alias_version(world.client, name, STAGING) == "1"
    with pytest.raises(RegistryError):
        set_alias_verified(world.client, name, "1", PRODUCTION, world.X, 1 - world.expected(0))
    assert alias_version(world.client, name, PRODUCTION) is None
    assert aliases(world, name) == {STAGING: "1"}


def test_promote_sets_production_and_keeps_the_replaced_version_as_previous(world, name):
    assert promote(world.client, name, "1") == {"production": "1", "previous": None}
    assert aliases(world, name) == {PRODUCTION: "1"}
    assert promote(world.client, name, "2") == {"production": "2", "previous": "1"}
    assert aliases(world, name) == {PRODUCTION: "2", PREVIOUS: "1"}


def test_promoting_the_production_version_again_changes_nothing(world, name):
    promote(world.client, name, "1")
    promote(world.client, name, "2")
    assert promote(world.client, name, "2") == {"production": "2", "previous": None}
    assert aliases(world, name) == {PRODUCTION: "2", PREVIOUS: "1"}


def test_rollback_swaps_production_and_previous(world, name):
    promote(world.client, name, "1")
    promote(world.client, name, "2")
    assert rollback(world.client, name) == {"production": "1", "previous": "2"}
    assert aliases(world, name) == {PRODUCTION: "1", PREVIOUS: "2"}
    assert rollback(world.client, name) == {"production": "2", "previous": "1"}
    assert aliases(world, name) == {PRODUCTION: "2", PREVIOUS: "1"}


def test_rollback_without_a_previous_version_raises_and_changes_nothing(world, name):
    promote(world.client, name, "1")
    with pytest.raises(RegistryError, match="no 'previous' version"):
        rollback(world.client, name)
    assert aliases(world, name) == {PRODUCTION: "1"}


def test_alias_version_is_none_for_a_missing_alias_or_model(world, name):
    assert alias_version(world.client, name, PRODUCTION) is None
    assert alias_version(world.client, "no_such_model", PRODUCTION) is None


def test_register_adds_versions_to_an_existing_model(world, name):
    mv = register(world.client, name, world.infos[0].model_uri, world.runs[0], {"k": "v"})
    assert str(mv.version) == "3" and mv.status == "READY" and mv.tags["k"] == "v"


def test_load_reference_returns_the_production_versions_sample_and_baseline(world, name, _featured):
    with pytest.raises(RegistryError, match="no 'production' version"):
        load_reference(world.client, name, tracking_uri=world.uri)
    promote(world.client, name, "1")
    mv, sample, baseline = load_reference(world.client, name, tracking_uri=world.uri)
    assert str(mv.version) == "1"
    pd.testing.assert_frame_equal(sample, _featured.head(50), check_dtype=False)
    assert baseline == {"metrics": {"f1": 0.9}, "fingerprint": "abc"}
    promote(world.client, name, "2")  # version 2's run stored no reference
    with pytest.raises(RegistryError, match="version 2 has no stored reference"):
        load_reference(world.client, name, tracking_uri=world.uri)
