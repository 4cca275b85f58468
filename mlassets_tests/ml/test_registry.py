"""The registry against a real MLflow SQLite store in a temp folder (no mocks)."""

import os
import pickle
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from mlassets.ml.data import target
from mlassets.ml.features import input_frame
from mlassets.ml.registry import (
    ALLOW_DESERIALIZATION,
    PREVIOUS,
    PRODUCTION,
    STAGING,
    RegistryError,
    abandon,
    alias_version,
    load_reference,
    load_verified_model,
    log_pipeline,
    log_reference,
    mark_registered,
    predictions_match,
    promote,
    register,
    rollback,
    set_alias_verified,
    version_status,
)
from mlassets.ml.status import ABANDONED, PENDING, REGISTERED, ROLLED_BACK, STATUS_TAG
from mlassets.ml.training import make_estimator, spec_pipeline

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:Hint. Inferred schema contains integer"),
]

TAGS = {"data_fingerprint": "0123456789abcdef", "strategy": "fixed"}


def fit(spec, X, y, seed):
    estimator = make_estimator("random_forest", {"n_estimators": 5, "max_depth": 4}, seed=seed)
    return spec_pipeline(spec, estimator).fit(X, y)


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
        # models logged only to be tampered with live apart from the two shared ones
        self.scratch = self.client.create_experiment(
            "scratch", artifact_location=str(root / "scratch")
        )
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
        """Versions 1 and 2 of `name`, registered the way the registration step does it."""
        versions = []
        for info, run_id in zip(self.infos, self.runs, strict=True):
            mv = register(self.client, name, info.model_uri, run_id, TAGS, model_id=info.model_id)
            mark_registered(self.client, name, mv.version)
            versions.append(str(mv.version))
        return versions

    def fresh_version(self, name: str) -> tuple[str, Path]:
        """Model 0 logged again in its own run, registered under `name`: (version, its files)."""
        import mlflow

        with mlflow.start_run(experiment_id=self.scratch) as run:
            info = log_pipeline(self.models[0], self.X)
        mv = register(
            self.client, name, info.model_uri, run.info.run_id, TAGS, model_id=info.model_id
        )
        mark_registered(self.client, name, mv.version)
        where = self.client.get_model_version_download_uri(name, mv.version)
        return str(mv.version), Path(where.removeprefix("file://"))


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
    model_name = fresh_name()
    assert world.register_both(model_name) == ["1", "2"]
    return model_name


def aliases(world, name) -> dict[str, str]:
    return {k: str(v) for k, v in world.client.get_registered_model(name).aliases.items()}


def tag(world, name, version: str, key: str) -> str | None:
    return world.client.get_model_version(name, version).tags.get(key)


def fresh_name() -> str:
    return f"m_{uuid.uuid4().hex[:8]}"


def test_the_two_models_predict_differently(world):
    # otherwise a wrong-version load could pass predictions_match by accident
    assert (world.expected(0) != world.expected(1)).any()


def test_register_creates_the_model_and_a_ready_version_with_its_tags(world, name):
    model = world.client.get_registered_model(name)
    assert "mlassets" in model.description
    mv = world.client.get_model_version(name, "1")
    assert mv.status == "READY"
    assert {k: mv.tags[k] for k in TAGS} == TAGS
    assert mv.tags[STATUS_TAG] == REGISTERED
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


def test_staging_finds_the_version_through_its_client_not_mlflows_global_uris(
    world, name, tmp_path
):
    """A step process that set no MLflow URI (a multiprocess or Celery step without
    `MLFLOW_TRACKING_URI`) has MLflow's default store as its global one: staging and its check
    must find the version through the client's explicit URIs, not there."""
    import mlflow

    from mlassets.ml.registry import version_predictions_match

    before = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    elsewhere = f"sqlite:///{tmp_path / 'default.db'}"
    mlflow.set_tracking_uri(elsewhere)
    mlflow.set_registry_uri(elsewhere)
    try:
        with pytest.raises(RegistryError, match="could not be downloaded"):
            predictions_match(f"models:/{name}/1", world.X, world.expected(0))  # the global store
        check = version_predictions_match(world.client, name, "1", world.X, world.expected(0))
        assert check == {"model_uri": f"models:/{name}/1", "rows": 200, "mismatched": 0}
        set_alias_verified(world.client, name, "1", STAGING, world.X, world.expected(0))
        assert alias_version(world.client, name, STAGING) == "1"
    finally:
        mlflow.set_tracking_uri(before[0])
        mlflow.set_registry_uri(before[1])


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
    assert tag(world, name, "1", "mlassets.promoted_from") == "none"
    assert tag(world, name, "2", "mlassets.promoted_from") == "1"


def test_promoting_the_production_version_again_changes_nothing(world, name):
    promote(world.client, name, "1")
    promote(world.client, name, "2")
    assert promote(world.client, name, "2") == {"production": "2", "previous": None}
    assert aliases(world, name) == {PRODUCTION: "2", PREVIOUS: "1"}


def test_promote_as_compare_and_set_refuses_when_production_moved(world, name):
    # expected: no production yet (None); then production must still be the compared version
    assert promote(world.client, name, "1", expected_current=None)["production"] == "1"
    with pytest.raises(RegistryError, match="production of .* is version 1, but version 2 was"):
        promote(world.client, name, "2", expected_current=None)
    assert aliases(world, name) == {PRODUCTION: "1"}
    assert promote(world.client, name, "2", expected_current="1")["production"] == "2"
    # the version already in production: nothing to compare, nothing moves
    assert promote(world.client, name, "2", expected_current="1")["previous"] is None
    assert aliases(world, name) == {PRODUCTION: "2", PREVIOUS: "1"}


def test_a_failed_precondition_leaves_the_alias_where_it_was(world, name):
    set_alias_verified(world.client, name, "1", STAGING, world.X, world.expected(0))

    def production_moved(client) -> None:
        raise RegistryError("production moved meanwhile; staging not moved")

    with pytest.raises(RegistryError, match="staging not moved"):
        set_alias_verified(
            world.client, name, "2", STAGING, world.X, world.expected(1), production_moved
        )
    assert alias_version(world.client, name, STAGING) == "1"


def promoted_twice(world, name) -> None:
    """Production 2, previous 1, staging 2: what two successful training runs leave."""
    set_alias_verified(world.client, name, "1", STAGING, world.X, world.expected(0))
    promote(world.client, name, "1")
    set_alias_verified(world.client, name, "2", STAGING, world.X, world.expected(1))
    promote(world.client, name, "2")
    assert aliases(world, name) == {PRODUCTION: "2", PREVIOUS: "1", STAGING: "2"}


def test_rollback_moves_production_and_staging_to_previous_and_clears_previous(world, name):
    promoted_twice(world, name)
    moved = rollback(world.client, name, run_id="dagster-run-1")
    assert moved == {"production": "1", "rolled_back_from": "2", "staging": "1"}
    assert aliases(world, name) == {PRODUCTION: "1", STAGING: "1"}
    left = world.client.get_model_version(name, "2")
    assert left.aliases == []
    assert left.tags[STATUS_TAG] == ROLLED_BACK
    assert left.tags["mlassets.rolled_back_by"] == "dagster-run-1"
    assert tag(world, name, "1", "mlassets.rolled_back_from") == "2"
    assert version_status(world.client, name, "1") == REGISTERED
    # the served model is the target's
    assert (
        predictions_match(f"models:/{name}@{PRODUCTION}", world.X, world.expected(0))["mismatched"]
        == 0
    )


def test_rollback_run_again_refuses_instead_of_toggling_back(world, name):
    promoted_twice(world, name)
    rollback(world.client, name)
    before = aliases(world, name)
    with pytest.raises(RegistryError, match="no 'previous' version.*with to_version"):
        rollback(world.client, name)
    assert aliases(world, name) == before == {PRODUCTION: "1", STAGING: "1"}
    assert version_status(world.client, name, "2") == ROLLED_BACK


def test_a_rolled_back_version_takes_no_alias_except_by_rollback_to_version(world, name):
    promoted_twice(world, name)
    rollback(world.client, name)
    with pytest.raises(RegistryError, match="'rolled_back'.*promotion refused"):
        promote(world.client, name, "2")
    with pytest.raises(RegistryError, match="'rolled_back'.*alias 'staging' refused"):
        set_alias_verified(world.client, name, "2", STAGING, world.X, world.expected(1))
    assert aliases(world, name) == {PRODUCTION: "1", STAGING: "1"}

    # `previous` may come to name a rolled-back version (a later promotion over a production
    # left on it by a killed rollback): back to it only by number
    world.client.set_registered_model_alias(name, PREVIOUS, "2")
    with pytest.raises(RegistryError, match="was itself rolled back; return to it only by number"):
        rollback(world.client, name)
    world.client.delete_registered_model_alias(name, PREVIOUS)
    moved = rollback(world.client, name, to_version=2)
    assert moved == {"production": "2", "rolled_back_from": "1", "staging": "2"}
    assert aliases(world, name) == {PRODUCTION: "2", STAGING: "2"}
    assert version_status(world.client, name, "2") == REGISTERED
    assert version_status(world.client, name, "1") == ROLLED_BACK
    assert tag(world, name, "2", "mlassets.rolled_back_from") == "1"
    assert tag(world, name, "1", "mlassets.rolled_back_by") is None  # no run id given

    with pytest.raises(RegistryError, match="production is already version 2; nothing to roll"):
        rollback(world.client, name, to_version="2")
    assert aliases(world, name) == {PRODUCTION: "2", STAGING: "2"}


# --- every move under the lease, read back, recorded; a failed restore is said ---------------


def test_every_move_is_recorded_with_its_holder_and_leaves_no_lease(world, name):
    from mlassets.ml.lease import LEASE_TAG
    from mlassets.ml.registry import PROMOTED_BY_TAG, alias_moves

    set_alias_verified(
        world.client, name, "1", STAGING, world.X, world.expected(0), holder="run-stage"
    )
    promote(world.client, name, "1", holder="run-p1")
    promote(world.client, name, "2", expected_current="1", holder="run-p2")
    rollback(world.client, name, run_id="run-r")
    model = world.client.get_registered_model(name)
    assert LEASE_TAG not in model.tags  # each mover released it
    moves = alias_moves(model.tags)
    assert [(m["by"], m["action"]) for m in moves] == [
        ("run-stage", "stage version 1 as staging"),
        ("run-p1", "promote version 1"),
        ("run-p2", "promote version 2"),
        ("run-r", "rollback"),
    ]
    assert moves[2]["before"] == {PRODUCTION: "1", STAGING: "1"}
    assert moves[2]["after"] == {PREVIOUS: "1", PRODUCTION: "2", STAGING: "1"}
    assert moves[3]["after"] == aliases(world, name) == {PRODUCTION: "1", STAGING: "1"}
    for move in moves:  # each held its lease from before the move until after it
        assert move["held_from"] <= move["at"] and len(move["lease"]) == 12
    assert tag(world, name, "2", PROMOTED_BY_TAG) == "run-p2"


def test_an_alias_read_back_to_another_version_names_alias_expected_and_found(world, name):
    from mlassets.ml.registry import require_alias

    world.client.set_registered_model_alias(name, PRODUCTION, "2")
    require_alias(world.client, name, PRODUCTION, "2")
    with pytest.raises(RegistryError) as moved:
        require_alias(world.client, name, PRODUCTION, "1")
    assert f"alias 'production' of {name} was just moved to version 1 but names version 2" in str(
        moved.value
    )
    with pytest.raises(RegistryError, match="moved to no version but names version 2"):
        require_alias(world.client, name, PRODUCTION, None)


def faults(monkeypatch, tmp_path, *names: str) -> None:
    """Arm MLflow-is-briefly-unavailable faults at `names` (each fires once: `faults.py`)."""
    monkeypatch.setenv("MLASSETS_HOME", str(tmp_path))
    monkeypatch.setenv("MLASSETS_TRANSIENT_FAULT", ",".join(names))


def test_a_restore_that_fails_is_noted_on_the_error_and_logged(world, name, monkeypatch, tmp_path):
    from mlflow.exceptions import MlflowException

    from mlassets.ml.lease import LEASE_TAG

    promote(world.client, name, "1")
    promote(world.client, name, "2")  # production 2, previous 1
    # a rollback to 1 fails right after its first move (staging); putting production back
    # fails too (it had not moved yet): the note says so, and where the aliases are now
    world.client.set_registered_model_alias(name, STAGING, "1")
    faults(monkeypatch, tmp_path, "alias_moved", "alias_restore")
    said: list[str] = []
    with pytest.raises(MlflowException, match="injected transient fault at alias_moved") as err:
        rollback(world.client, name, to_version="1", run_id="run-r", log=said.append)
    notes = getattr(err.value, "__notes__", [])
    assert len(notes) == 1 and said == notes
    note = notes[0]
    assert note.startswith(f"{name}: restoring the registry after this error failed: alias ")
    assert "'production' not put back to version 2 (MlflowException: injected" in note
    # the other aliases and the tags were put back; production never moved from 2
    assert f"Aliases now: {PREVIOUS} = 1, {PRODUCTION} = 2, {STAGING} = 1." in note
    assert "rollback_job (to_version)" in note
    assert aliases(world, name) == {PRODUCTION: "2", PREVIOUS: "1", STAGING: "1"}
    assert version_status(world.client, name, "2") == REGISTERED
    assert tag(world, name, "1", "mlassets.rolled_back_from") is None
    assert LEASE_TAG not in world.client.get_registered_model(name).tags


def test_a_restore_that_succeeds_is_noted_too(world, name, monkeypatch, tmp_path):
    from mlflow.exceptions import MlflowException

    from mlassets.ml.registry import PROMOTED_FROM_TAG

    promote(world.client, name, "1")
    faults(monkeypatch, tmp_path, "alias_moved")
    said: list[str] = []
    with pytest.raises(MlflowException) as err:
        promote(world.client, name, "2", log=said.append)  # fails once previous has moved
    assert err.value.__notes__ == [
        f"{name}: aliases and tags put back as they were (aliases now: {PRODUCTION} = 1)"
    ]
    assert said == []  # only a failed restore is a warning
    assert aliases(world, name) == {PRODUCTION: "1"}
    assert tag(world, name, "2", PROMOTED_FROM_TAG) is None


def test_rollback_refuses_without_production_or_target_and_changes_nothing(world, name):
    with pytest.raises(RegistryError, match="has no production version"):
        rollback(world.client, name, to_version="1")
    assert aliases(world, name) == {}
    promote(world.client, name, "1")
    with pytest.raises(RegistryError, match="no 'previous' version to roll back to"):
        rollback(world.client, name)
    with pytest.raises(RegistryError, match="has no version '9'"):
        rollback(world.client, name, to_version="9")
    assert aliases(world, name) == {PRODUCTION: "1"}


def test_rollback_refuses_a_pending_or_abandoned_target(world, name):
    promote(world.client, name, "1")
    pending = register(
        world.client, name, world.infos[1].model_uri, world.runs[1], TAGS
    ).version  # version 3, never marked registered
    with pytest.raises(RegistryError, match="'pending'; not rolling back to it"):
        rollback(world.client, name, to_version=pending)
    abandon(world.client, name, "2", "evaluated on the wrong split")
    with pytest.raises(RegistryError, match="'abandoned'; not rolling back to it"):
        rollback(world.client, name, to_version="2")
    assert aliases(world, name) == {PRODUCTION: "1"}


# --- the version lifecycle ---------------------------------------------------------------------


def test_a_pending_version_takes_no_alias_until_marked_registered(world):
    name = fresh_name()
    info = world.infos[0]
    mv = register(world.client, name, info.model_uri, world.runs[0], TAGS, model_id=info.model_id)
    assert mv.status == "READY" and mv.tags[STATUS_TAG] == PENDING
    with pytest.raises(
        RegistryError, match=r"'pending' \(its registration never finished\).*refused"
    ):
        set_alias_verified(world.client, name, "1", STAGING, world.X, world.expected(0))
    with pytest.raises(RegistryError, match="'pending'.*promotion refused"):
        promote(world.client, name, "1")
    assert aliases(world, name) == {}

    mark_registered(world.client, name, mv.version)
    mark_registered(world.client, name, mv.version)  # idempotent
    assert version_status(world.client, name, "1") == REGISTERED
    set_alias_verified(world.client, name, "1", STAGING, world.X, world.expected(0))
    promote(world.client, name, "1")
    assert aliases(world, name) == {STAGING: "1", PRODUCTION: "1"}


def test_an_abandoned_version_is_refused_everywhere_and_stays_abandoned(world, name):
    promote(world.client, name, "1")
    abandon(world.client, name, "2", "killed before its reference was logged")
    mv = world.client.get_model_version(name, "2")
    assert mv.tags[STATUS_TAG] == ABANDONED
    assert mv.tags["mlassets.abandoned_reason"] == "killed before its reference was logged"
    with pytest.raises(RegistryError, match="abandoned: killed before its reference was logged"):
        set_alias_verified(world.client, name, "2", STAGING, world.X, world.expected(1))
    with pytest.raises(RegistryError, match="'abandoned'.*promotion refused"):
        promote(world.client, name, "2")
    with pytest.raises(RegistryError, match="only a pending version can be marked registered"):
        mark_registered(world.client, name, "2")
    assert version_status(world.client, name, "2") == ABANDONED
    assert aliases(world, name) == {PRODUCTION: "1"}


def test_the_production_version_cannot_be_abandoned(world, name):
    promote(world.client, name, "1")
    with pytest.raises(RegistryError, match="version 1 is production; roll back"):
        abandon(world.client, name, "1", "oops")
    assert version_status(world.client, name, "1") == REGISTERED


def test_a_version_made_before_the_status_tag_counts_as_registered(world):
    name = fresh_name()
    world.client.create_registered_model(name)
    mv = world.client.create_model_version(name, world.infos[0].model_uri, run_id=world.runs[0])
    assert STATUS_TAG not in mv.tags
    assert version_status(world.client, name, mv.version) == REGISTERED
    set_alias_verified(world.client, name, mv.version, STAGING, world.X, world.expected(0))
    assert promote(world.client, name, mv.version) == {"production": "1", "previous": None}


def test_alias_version_is_none_for_a_missing_alias_or_model(world, name):
    assert alias_version(world.client, name, PRODUCTION) is None
    assert alias_version(world.client, "no_such_model", PRODUCTION) is None


def test_register_adds_versions_to_an_existing_model(world, name):
    mv = register(world.client, name, world.infos[0].model_uri, world.runs[0], {"k": "v"})
    assert str(mv.version) == "3" and mv.status == "READY" and mv.tags["k"] == "v"
    assert mv.tags[STATUS_TAG] == PENDING


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


# --- loading: skops with our trusted list, nothing unpickled ----------------------------------


class _Touch:
    """A pickle payload: unpickling it creates `path` (proof that something was unpickled)."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


class _Trap:
    """A type skops does not trust: building it from a skops dump creates the marker file."""

    def __init__(self, path: str):
        self.path = path

    def __setstate__(self, state: dict) -> None:
        Path(state["path"]).touch()
        self.__dict__.update(state)


TRAP = f"{_Trap.__module__}.{_Trap.__qualname__}"


def _pickled(model_dir: Path, marker: Path, flavor: dict, fmt: str) -> None:
    """Declare `fmt` and ship a pickle whose loading would create the marker."""
    (model_dir / "model.pkl").write_bytes(pickle.dumps(_Touch(marker)))
    flavor["sklearn"].update(serialization_format=fmt, pickled_model="model.pkl")
    flavor["python_function"]["model_path"] = "model.pkl"


def _skops_trap(file: Path, marker: Path) -> None:
    """Write a skops dump whose loading (were `_Trap` trusted) would create the marker."""
    import skops.io

    file.write_bytes(skops.io.dumps(_Trap(str(marker))))


def t_pickle(model_dir: Path, marker: Path, meta: dict) -> None:
    _pickled(model_dir, marker, meta["flavors"], "pickle")


def t_cloudpickle(model_dir: Path, marker: Path, meta: dict) -> None:
    _pickled(model_dir, marker, meta["flavors"], "cloudpickle")


def t_no_sklearn_flavor(model_dir: Path, marker: Path, meta: dict) -> None:
    # MLflow's sklearn loader assumes pickle when the flavor is missing
    _pickled(model_dir, marker, meta["flavors"], "pickle")
    del meta["flavors"]["sklearn"]


def t_trusted_list(model_dir: Path, marker: Path, meta: dict) -> None:
    _skops_trap(model_dir / "model.skops", marker)
    meta["flavors"]["sklearn"]["skops_trusted_types"].append(TRAP)


def t_skops_payload(model_dir: Path, marker: Path, meta: dict) -> None:
    _skops_trap(model_dir / "model.skops", marker)


def t_pyfunc_loader(model_dir: Path, marker: Path, meta: dict) -> None:
    (model_dir / "python_model.pkl").write_bytes(pickle.dumps(_Touch(marker)))
    meta["flavors"]["python_function"].update(
        loader_module="mlflow.pyfunc.model", python_model="python_model.pkl"
    )


def t_pyfunc_path(model_dir: Path, marker: Path, meta: dict) -> None:
    (model_dir / "model.pkl").write_bytes(pickle.dumps(_Touch(marker)))
    meta["flavors"]["python_function"]["model_path"] = "model.pkl"


def t_outside(model_dir: Path, marker: Path, meta: dict) -> None:
    # an absolute path to a real skops file outside the model's folder
    _skops_trap(marker.parent / "elsewhere.skops", marker)
    meta["flavors"]["sklearn"]["pickled_model"] = str(marker.parent / "elsewhere.skops")


TAMPERINGS: dict[str, tuple[Callable[[Path, Path, dict], None], str]] = {
    "pickle": (t_pickle, "declares serialization_format 'pickle'; only skops is loaded"),
    "cloudpickle": (
        t_cloudpickle,
        "declares serialization_format 'cloudpickle'; only skops is loaded",
    ),
    "no_sklearn_flavor": (t_no_sklearn_flavor, "has no sklearn flavor"),
    "trusted_list": (t_trusted_list, "declares skops_trusted_types beyond mlassets' list"),
    "skops_payload": (t_skops_payload, "model.skops holds types we do not trust"),
    "pyfunc_loader": (t_pyfunc_loader, "loader_module 'mlflow.pyfunc.model'"),
    "pyfunc_path": (t_pyfunc_path, "pyfunc model_path 'model.pkl' is not the skops file"),
    "outside": (t_outside, "is not a file of the model"),
}


def test_the_traps_would_fire_if_loaded(tmp_path):
    # otherwise "the marker was never created" would prove nothing
    import skops.io

    pickle.loads(pickle.dumps(_Touch(tmp_path / "pickled")))
    assert (tmp_path / "pickled").exists()
    dump = skops.io.dumps(_Trap(str(tmp_path / "skopsed")))
    assert skops.io.get_untrusted_types(data=dump) == [TRAP]
    skops.io.loads(dump, trusted=[TRAP])
    assert (tmp_path / "skopsed").exists()


def test_load_verified_model_returns_the_registered_pipeline(world, name):
    model = load_verified_model(world.client, name, 2)
    assert type(model).__name__ == "Pipeline"
    np.testing.assert_array_equal(model.predict(world.X), world.expected(1))
    with pytest.raises(RegistryError, match="has no version '7'"):
        load_verified_model(world.client, name, "7")


def test_verified_models_load_in_two_threads_while_a_pickled_one_is_refused(world, monkeypatch):
    """MLflow's deserialization switch is never lifted, not even for a moment: two threads load
    and check verified versions (the serving path, `predictions_match`) while a third loads a
    pickled sklearn model through MLflow in the same process, and a fourth watches the switch.
    Every pickled load is refused and the switch never reads true (it used to be lifted, process
    wide, around each verified load)."""
    import threading

    import mlflow
    from mlflow.exceptions import MlflowException
    from sklearn.linear_model import LogisticRegression

    monkeypatch.setenv(ALLOW_DESERIALIZATION, "false")
    name = fresh_name()
    assert world.register_both(name) == ["1", "2"]
    with mlflow.start_run(experiment_id=world.scratch):
        pickled = mlflow.sklearn.log_model(
            LogisticRegression().fit([[0.0], [1.0]], [0, 1]),
            name="pickled",
            serialization_format="cloudpickle",
        ).model_uri

    rounds, done = 4, threading.Event()
    mismatched, refused, loaded, seen = [], [], [], set()

    def verified(i: int) -> None:
        for _ in range(rounds):
            got = predictions_match(f"models:/{name}/{i + 1}", world.X, world.expected(i))
            mismatched.append(got["mismatched"])

    def pickle_loader() -> None:
        while not done.is_set():
            try:
                mlflow.pyfunc.load_model(pickled)
                loaded.append(True)
            except MlflowException as e:
                refused.append(ALLOW_DESERIALIZATION in str(e))

    def watcher() -> None:
        while not done.is_set():
            seen.add(os.environ.get(ALLOW_DESERIALIZATION))

    loaders = [threading.Thread(target=verified, args=(i,)) for i in (0, 1)]
    others = [threading.Thread(target=pickle_loader), threading.Thread(target=watcher)]
    for t in others + loaders:
        t.start()
    for t in loaders:
        t.join(timeout=300)
    done.set()
    for t in others:
        t.join(timeout=60)
    assert mismatched == [0] * (2 * rounds)
    assert loaded == [] and len(refused) >= 1 and all(refused), (loaded, refused)
    assert seen == {"false"}, seen


@pytest.mark.parametrize("how", sorted(TAMPERINGS))
def test_a_tampered_version_is_refused_by_name_on_every_path_and_nothing_is_loaded(
    world, tmp_path, how
):
    tamper, message = TAMPERINGS[how]
    name = fresh_name()
    info = world.infos[0]
    register(world.client, name, info.model_uri, world.runs[0], TAGS, model_id=info.model_id)
    mark_registered(world.client, name, "1")
    promote(world.client, name, "1")
    version, model_dir = world.fresh_version(name)
    assert version == "2"
    assert predictions_match(f"models:/{name}/2", world.X, world.expected(0))["mismatched"] == 0

    marker = tmp_path / "unpickled"
    mlmodel = model_dir / "MLmodel"
    meta = yaml.safe_load(mlmodel.read_text())
    tamper(model_dir, marker, meta)
    mlmodel.write_text(yaml.safe_dump(meta))

    with pytest.raises(RegistryError, match=f"models:/{name}/2.*{message}"):
        predictions_match(f"models:/{name}/2", world.X, world.expected(0))
    with pytest.raises(RegistryError, match=f"model {name} version 2.*{message}"):
        load_verified_model(world.client, name, "2")
    with pytest.raises(RegistryError, match=message):
        set_alias_verified(world.client, name, "2", STAGING, world.X, world.expected(0))
    with pytest.raises(RegistryError, match=f"not rolling back {name} to version 2.*{message}"):
        rollback(world.client, name, to_version="2")
    assert aliases(world, name) == {PRODUCTION: "1"}
    assert version_status(world.client, name, "1") == REGISTERED
    assert not marker.exists()


def test_a_served_version_answers_its_calibrated_probability_and_an_older_one_says_why_not(
    world, _featured, spec
):
    """The calibration travels in the model's folder (`calibration.json`): the served model
    answers `output=calibrated_probability` exactly as the in-process calibration does; a
    version logged without one refuses that output by name and still answers the others."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from mlassets.ml.data import target
    from mlassets.ml.estimation import fit_calibration, probability

    model = world.models[0]
    cal = fit_calibration(model, world.X, target(_featured, spec).head(200), "temperature")
    with mlflow.start_run(experiment_id=world.scratch):
        info = log_pipeline(model, world.X, calibration=cal.to_dict())
    served = mlflow.pyfunc.load_model(info.model_uri)
    answer = served.predict(world.X, params={"output": "calibrated_probability"})
    np.testing.assert_allclose(answer, probability(model, cal, world.X), atol=1e-12)
    np.testing.assert_array_equal(served.predict(world.X), world.expected(0))

    empty = served.predict(world.X.head(0), params={"output": "calibrated_probability"})
    assert len(empty) == 0  # an empty batch: an empty answer

    older = mlflow.pyfunc.load_model(world.infos[1].model_uri)  # logged without a calibration
    with pytest.raises(MlflowException, match="carries no calibration"):
        older.predict(world.X, params={"output": "calibrated_probability"})
    assert len(older.predict(world.X, params={"output": "probability"})) == len(world.X)


@pytest.mark.parametrize(
    "text",
    [
        '{"format": 1, "columns": {"a": {"type": "float", "colour": 1}}, "label": {}}',
        '{"format": 1, "columns": {"a": {"type": "float"}}}',
        '{"format": 1, "columns": {"a": {"type": "float", "values": 3}}, "label": {}}',
        '{"format": 2, "columns": {}, "label": {"positive": 1}}',
        "[1]",
        "{oops",
    ],
)
def test_a_malformed_rules_file_is_refused_naming_it(tmp_path, text):
    from mlassets.ml.serving import RULES_FILE, load_rules

    assert load_rules(tmp_path) is None  # none written: an older version, no error
    (tmp_path / RULES_FILE).write_text(text)
    with pytest.raises(RegistryError, match=f"{RULES_FILE} is not spec rules mlassets wrote"):
        load_rules(tmp_path)


@pytest.mark.parametrize("text", ['{"method": "beta", "response": "decision_function"}', "{oops"])
def test_a_malformed_calibration_file_is_refused_naming_it(tmp_path, text):
    from mlassets.ml.serving import CALIBRATION_FILE, load_calibration

    assert load_calibration(tmp_path) is None  # none written: an older version, no error
    (tmp_path / CALIBRATION_FILE).write_text(text)
    with pytest.raises(RegistryError, match=f"{CALIBRATION_FILE} is not a calibration"):
        load_calibration(tmp_path)
