"""Every selection a user can make is safe: through the real `dagster` CLI, partial selections,
re-runs and a changed spec either do consistent work or refuse, saying what to materialize, and
never create a version or move `production`.

One world for the module: a baseline `training_job` puts version 1 in production, then each
test tries one way around the gates, and the last one shows a good run still succeeds.
"""

import shutil
from pathlib import Path

import pandas as pd
import pytest

from mlassets_tests.conftest import FAST_TRAINING, NAME, CliWorld, cli_world_with_version_1

pytestmark = pytest.mark.e2e

# The deliberately useless candidate: it predicts no positive at all.
USELESS = {
    "strategy": "fixed",
    "estimator": "logistic_regression",
    "params": {"C": 1e-6},
    "tune_threshold": False,
    "cv_folds": 3,
}
REGISTRY = "registered_model,staging_model,production_model"


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> CliWorld:
    return cli_world_with_version_1(tmp_path_factory.mktemp("selections"))


def refused(proc, *phrases: str) -> str:
    """The run failed and its log says why, with each phrase."""
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    for phrase in phrases:
        assert phrase in out, (phrase, out[-3000:])
    return out


def test_candidate_alone_then_the_registry_is_refused(world):
    before = world.registry_state()
    useless = world.config("useless", {"candidate_model": {"config": USELESS}})
    assert world.materialize("candidate_model", useless).returncode == 0
    refused(
        world.materialize(REGISTRY),
        "not registering fraud_detection",
        "evaluation_report judged candidate",
        "materialize evaluation_report",
    )
    assert world.registry_state() == before


def test_candidate_and_registry_without_evaluation_is_refused(world):
    before = world.registry_state()
    useless = world.config("useless", {"candidate_model": {"config": USELESS}})
    refused(
        world.materialize(f"candidate_model,{REGISTRY}", useless),
        "evaluation_report judged candidate",
    )
    assert world.registry_state() == before


def test_evaluating_a_stale_candidate_is_refused(world):
    """New splits, then the old candidate (trained on the old split) is evaluated: refused."""
    before = world.registry_state()
    reseeded = world.config("reseeded", {"splits": {"config": {"seed": 5}}})
    assert world.materialize("train_set,validation_set,test_set", reseeded).returncode == 0
    refused(
        world.materialize("evaluation_report"),
        "evaluation_report: inputs come from different splits",
    )
    assert world.registry_state() == before


def test_the_registry_after_the_spec_changed_is_refused(world):
    """Evaluated and passed under one spec; registering under an edited spec is refused."""
    from mlassets.spec import DEFAULT_SPEC

    before = world.registry_state()
    fast = world.config("fast", {"candidate_model": {"config": FAST_TRAINING}})
    up_to_evaluation = "*evaluation_report"
    proc = world.materialize(up_to_evaluation, fast)
    assert proc.returncode == 0, proc.stderr[-3000:]
    edited = Path(world.env["MLASSETS_HOME"]) / "edited_spec.yaml"
    shutil.copy(DEFAULT_SPEC, edited)
    edited.write_text(edited.read_text().replace("min_rows: 1000", "min_rows: 900"))
    env = {**world.env, "MLASSETS_SPEC": str(edited)}
    refused(world.materialize(REGISTRY, env=env), "the current spec is", "run training_job")
    assert world.registry_state() == before


def test_features_after_failed_data_checks_is_refused(world):
    before = world.registry_state()
    good = pd.read_parquet(world.source)
    bad = good.copy()
    bad.loc[[3, 4], "category"] = "toys"
    from mlassets.synthetic import write_frame

    try:
        write_frame(bad, world.source)
        out = world.materialize("raw_data")
        assert "values_allowed" in out.stdout + out.stderr
        refused(
            world.materialize("features*"),
            "failed its blocking data-quality checks ['values_allowed']",
            "materialize raw_data",
        )
    finally:
        write_frame(good, world.source)
    assert world.registry_state() == before


def test_a_good_run_after_all_that_succeeds(world):
    versions, production = world.registry_state()
    fast = world.config("fast", {"candidate_model": {"config": FAST_TRAINING}})
    proc = world.materialize("*", fast)
    assert proc.returncode == 0, proc.stderr[-3000:]
    after_versions, after_production = world.registry_state()
    assert after_versions == [*versions, str(len(versions) + 1)]
    assert after_production == after_versions[-1]
    client = world.client()
    mv = client.get_model_version(NAME, after_production)
    assert mv.tags["mlassets.status"] == "registered"
    # no value of the store was pickled
    store = Path(world.env["MLASSETS_HOME"]) / "storage" / NAME
    files = {p.name for p in store.rglob("*") if p.is_file()}
    assert files <= {"value.parquet", "model.skops", "provenance.json", "value.json", "LATEST"}
    assert {"value.parquet", "model.skops"} <= files
