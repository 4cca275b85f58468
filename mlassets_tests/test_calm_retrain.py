"""A retrain that ends calmly, on a real instance and registry (sensor ticks and runs in process).

A challenger that does not beat production is a normal outcome: the run succeeds, production
is kept and says why, and the batches it judged are no longer recent. After a retrain on
drifted batches, a batch like the source is compared with the source part of the training rows
and skipped. (The same through the daemon: test_daemon.py.)
"""

import json

import pytest
from dagster import AssetKey, DagsterEventType

from mlassets.synthetic import BATCH_FIRST_ID, fraud_batch, write_frame
from mlassets_tests.conftest import sensor_outcome as outcome
from mlassets_tests.conftest import sensor_tick as tick
from mlassets_tests.conftest import trained_world

pytestmark = pytest.mark.integration

ROWS = 12_000
NAME = "fraud_detection"


def retrain(env, request, tolerance: float):
    """The sensor's run, with `beats_production`'s tolerance set (a negative one asks the
    challenger to improve by that much)."""
    config = json.loads(json.dumps(request.run_config))
    config["ops"].setdefault("evaluation_report", {})["config"] = {"tolerance": tolerance}
    job = env.defs().resolve_job_def("training_job")
    return job.execute_in_process(
        run_config=config, instance=env.instance, tags=request.tags, raise_on_error=False
    )


def land(env, name: str, drift: str, seed: int, slot: int):
    df = fraud_batch(ROWS, seed, drift, first_id=BATCH_FIRST_ID + slot * 100_000)
    return write_frame(df, env.landing / name)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with trained_world(tmp_path_factory.mktemp("calm")) as (env, _):
        yield env


def test_a_challenger_that_does_not_beat_production_keeps_it_and_the_run_ends_well(world):
    from mlassets.ml.monitoring import production, recent
    from mlassets.ml.registry import JUDGED_TAG

    client = world.client()
    land(world, "batch_0001.parquet", "covariate", 71, slot=1)
    first = tick(world)
    [request] = outcome(first)[0]

    run = retrain(world, request, tolerance=-0.5)  # no challenger improves F1 by 0.5
    assert run.success  # a normal outcome, not a red run
    assert str(client.get_model_version_by_alias(NAME, "production").version) == "1"
    assert {str(v.version) for v in client.search_model_versions(f"name='{NAME}'")} == {"1"}
    materialized = {e.asset_key.to_user_string() for e in run.get_asset_materialization_events()}
    assert "evaluation_report" in materialized and "registered_model" not in materialized
    skipped = {e.step_key for e in run.all_events if e.event_type == DagsterEventType.STEP_SKIPPED}
    assert {"staging_model", "production_model"} <= skipped
    evaluations = [
        e.event_specific_data
        for e in run.all_events
        if e.event_type == DagsterEventType.ASSET_CHECK_EVALUATION
    ]
    beats = next(c for c in evaluations if c.check_name == "beats_production")
    assert not beats.passed and beats.severity.value == "WARN"

    # the run, the production asset and the registry say why, with the figures
    why = world.instance.get_run_by_id(run.run_id).tags["mlassets/outcome"]
    assert why.startswith("kept version 1: the challenger did not beat it (f1 0.")
    assert "needs >= " in why
    observed = world.instance.fetch_observations(AssetKey("production_model"), limit=5).records
    assert any(r.asset_observation.description == why for r in observed)
    judged = json.loads(client.get_registered_model(NAME).tags[JUDGED_TAG])
    assert [n for n, _ in judged] == ["batch_0001.parquet"]

    # `make demo`'s summary says which version serves and why
    from mlassets.summary import summarize

    said = summarize(world.instance, world.tracking_uri, NAME)
    assert f"production kept at version 1: training run {run.run_id[:8]}" in said
    assert "ended SUCCESS without promoting: kept version 1: the challenger did not beat it" in said

    # the batch it judged is no longer recent: the same evidence never retrains again
    spec = world.resources()["dataset"].spec()
    assert recent(str(world.landing), spec, production(client, NAME)).batches == []
    requests, skip = outcome(tick(world))
    assert requests == []
    assert skip.startswith("no recent batches: production version 1 was trained on, or kept")


def test_after_a_drift_retrain_a_batch_like_the_source_is_no_drift(world):
    """Production's training rows are the source and the drifted batch: a clean batch resembles
    the first part and is skipped, saying so; the mixture of both would have called it drift."""
    client = world.client()
    land(world, "batch_0002.parquet", "covariate", 72, slot=2)
    [request] = outcome(tick(world))[0]
    assert request.run_config["ops"]["raw_data"]["config"]["batches"] == ["batch_0002.parquet"]
    assert retrain(world, request, tolerance=1.0).success  # promotes, whatever F1 says
    promoted = client.get_model_version_by_alias(NAME, "production")
    assert str(promoted.version) == "2"

    land(world, "batch_0003.parquet", "none", 73, slot=3)
    requests, skip = outcome(tick(world))
    assert requests == [], requests[0].tags if requests else None
    assert skip.startswith("no retrain: no feature drifted"), skip
    assert (
        "compared with the part of the training rows the recent rows resemble most: source" in skip
    )
    assert "against landed batches (" in skip  # the other part, where it would have drifted
