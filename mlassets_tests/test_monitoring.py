"""drift_sensor and the monitoring assets on a real instance and registry (sensor ticks in process)."""

import json
import re

import pytest
from dagster import RunRequest, build_sensor_context

from mlassets.synthetic import BATCH_FIRST_ID, fraud_batch, write_frame
from mlassets_tests.conftest import trained_world

pytestmark = pytest.mark.integration

ROWS = 12_000  # above the default 10,000-row volume minimum


def write_batch(env, name: str, drift: str, seed: int, rows: int = ROWS, slot: int = 0):
    df = fraud_batch(rows, seed, drift, first_id=BATCH_FIRST_ID + slot * 100_000)
    return write_frame(df, env.landing / name)


def tick(env, cursor: str | None = None, **drift):
    # the code location's drift_sensor (one model: unprefixed names); its tick needs no tracking
    from mlassets.config import DriftConfig
    from mlassets.resources import MonitoringResource

    drift_sensor = env.defs().get_sensor_def("drift_sensor")
    resources = {k: v for k, v in env.resources().items() if k != "mlflow"}
    if drift:  # other thresholds for this tick
        resources["monitoring"] = MonitoringResource(drift=DriftConfig(**drift))
    context = build_sensor_context(instance=env.instance, cursor=cursor, resources=resources)
    result = drift_sensor(context)
    return result, context


def outcome(result):
    """(run requests, skip message) of a SensorResult."""
    skip = result.skip_reason.skip_message if result.skip_reason else None
    return list(result.run_requests or []), skip


def test_no_production_tells_user_to_train(env):
    write_batch(env, "batch_0001.parquet", "covariate", 1)
    result, _ = tick(env)
    requests, skip = outcome(result)
    assert requests == []
    assert "no production model for fraud_detection" in skip and "run training_job" in skip
    assert result.cursor is None  # nothing is marked seen before it can be judged


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with trained_world(tmp_path_factory.mktemp("monitoring")) as (env, _):
        yield env


def test_sensor_decisions_cursor_and_run_key(world):
    # nothing landed yet
    requests, skip = outcome(tick(world)[0])
    assert requests == [] and skip.startswith("no new batches")

    # a batch like the training data: no retrain, the figures say why, the cursor advances
    write_batch(world, "batch_0001.parquet", "none", 11, slot=1)
    result, _ = tick(world)
    requests, skip = outcome(result)
    assert requests == []
    assert "no retrain" in skip and f"{ROWS:,}" in skip
    # the labels judge these rows; the skip reason carries the estimate beside them
    assert (
        "performance is not degraded (f1 0." in skip and "labelled rows) (estimated f1 0." in skip
    )
    assert "estimated f1 holds (estimated_degradation)" in skip
    cursor_after_clean = result.cursor
    assert set(json.loads(cursor_after_clean)) == {"batch_0001.parquet"}

    # the same state again: nothing new
    requests, skip = outcome(tick(world, cursor_after_clean)[0])
    assert requests == [] and skip.startswith("no new batches")

    # covariate drift lands (and an unreadable file beside it)
    write_batch(world, "batch_0002.parquet", "covariate", 12, slot=2)
    (world.landing / "batch_0003.csv").write_text('user_id,"broken\n1,2,3')
    result, _ = tick(world, cursor_after_clean)
    requests, skip = outcome(result)
    assert len(requests) == 1
    request: RunRequest = requests[0]
    assert request.job_name in (None, "training_job")
    tags = request.tags
    assert tags["mlassets/trigger"] == "drift_sensor"
    # recent = the clean batch plus the drifted one: the category shift is diluted below its
    # minimum effect, the numeric shifts are not
    assert set(tags["mlassets/drifted_features"].split(",")) >= {"feature_1", "feature_2"}
    assert "retrain" in tags["mlassets/retrain_reason"]
    assert tags["mlassets/skipped_batches"] == "batch_0003.csv"
    raw_cfg = request.run_config["ops"]["raw_data"]["config"]
    # both readable recent batches are consumed; the broken one is skipped by name
    assert raw_cfg["batches"] == ["batch_0001.parquet", "batch_0002.parquet"]
    assert set(json.loads(result.cursor)) == {
        "batch_0001.parquet",
        "batch_0002.parquet",
        "batch_0003.csv",
    }

    # the run_key depends only on the batches: a repeated tick asks for the same run
    again, _ = tick(world, cursor_after_clean)
    assert outcome(again)[0][0].run_key == request.run_key
    # with the advanced cursor nothing new arrived: no duplicate request
    requests, skip = outcome(tick(world, result.cursor)[0])
    assert requests == [] and skip.startswith("no new batches")

    # the retraining run promotes through the same gates and names its reason
    client = world.client()
    before = client.get_model_version_by_alias("fraud_detection", "production")
    job = world.defs().resolve_job_def("training_job")
    run = job.execute_in_process(
        run_config=request.run_config,
        instance=world.instance,
        tags=request.tags,
        raise_on_error=False,
    )
    assert run.success
    after = client.get_model_version_by_alias("fraud_detection", "production")
    assert int(after.version) == int(before.version) + 1
    assert after.tags["trigger"] == "drift_sensor"
    assert "feature drift" in after.tags["retrain_reason"]
    raw_rows = run.output_for_node("raw_data")
    assert len(raw_rows) == 6000 + 2 * ROWS

    # the new production model consumed both batches: the broken file alone is not "recent"
    from mlassets.ml.monitoring import production, recent

    spec = world.resources()["dataset"].spec()
    prod = production(world.client(), "fraud_detection")
    rec = recent(str(world.landing), spec, prod)
    assert rec.batches == [] and "batch_0003.csv" in rec.errors


def test_an_estimated_drop_before_labels_waits_for_them_naming_the_estimate(world):
    """Unlabelled rows the production model is unsure of land: the sensor's decision is
    "retrain" on the estimate alone, and with no batch labelled yet it skips, naming the
    estimated_degradation with its figures and the batch it waits for; nothing is consumed."""
    import numpy as np

    from mlassets.ml.estimation import Calibration, probability
    from mlassets.ml.features import build_features, input_frame
    from mlassets.ml.landing import list_batches
    from mlassets.ml.monitoring import production, production_model

    spec = world.resources()["dataset"].spec()
    prod = production(world.client(), spec.name)
    model = production_model(world.client(), spec, prod.version)
    calibration = Calibration.from_dict(prod.baseline["estimation"]["calibration"])
    pool = fraud_batch(60_000, 41, first_id=BATCH_FIRST_ID + 900_000)
    p = probability(model, calibration, input_frame(build_features(pool, spec), spec))
    unsure = pool[(p > 0.1) & (p < 0.9)].assign(label=np.nan)
    assert len(unsure) >= 1_000
    write_frame(unsure.reset_index(drop=True), world.landing / "batch_0100.parquet")
    landed = list_batches(str(world.landing))
    seen = {b.name: b.digest for b in landed if b.name != "batch_0100.parquet"}

    result, _ = tick(world, json.dumps(seen), min_rows=1_000)
    requests, skip = outcome(result)
    assert requests == []
    assert skip.startswith("retrain: ") and "estimated_degradation before labels (" in skip
    assert "but no batch has its labels yet; waiting for labels: batch_0100.parquet" in skip
    # with its figures: the test rows' estimate -> this one [its interval]
    assert re.search(r"f1 0\.\d{4} -> 0\.\d{4} \[0\.\d{4}, 0\.\d{4}\]\)", skip), skip
    # nothing consumed: the batch is judged again once its labels land
    from mlassets.ml.monitoring import recent

    assert [b.name for b in recent(str(world.landing), spec, prod).batches] == [
        "batch_0100.parquet"
    ]


def test_too_few_rows_and_concept_drift(tmp_path_factory):
    with trained_world(tmp_path_factory.mktemp("concept")) as (env, _):
        write_batch(env, "batch_0001.parquet", "covariate", 21, rows=3000, slot=1)
        result, _ = tick(env)
        requests, skip = outcome(result)
        assert requests == []
        assert "too few rows" in skip and "3,000" in skip and "10,000" in skip

        write_batch(env, "batch_0002.parquet", "concept", 22, rows=ROWS, slot=2)
        (env.landing / "batch_0001.parquet").unlink()
        requests, skip = outcome(tick(env, result.cursor)[0])
        assert len(requests) == 1, skip
        tags = requests[0].tags
        assert tags["mlassets/degraded"] == "true"
        assert tags["mlassets/drifted_features"] == "none"
        # concept drift: the estimate cannot see it (inputs unchanged), the labels do
        assert tags["mlassets/estimated_degraded"] == "false"

        # the monitoring job shows the same decision as assets
        monitoring = env.run("monitoring_job", {})
        assert monitoring.success
        report = monitoring.output_for_node("drift_report")
        assert report.retrain is True and report.degraded is True
        assert report.rows == ROWS
        mats = {
            e.asset_key.to_user_string(): e for e in monitoring.get_asset_materialization_events()
        }
        meta = mats["drift_report"].materialization.metadata
        assert meta["retrain"].value is True
        assert "data:image/png;base64," in meta["most_drifted"].value
        # estimated next to realized: per batch in a plot, and as figures
        assert "data:image/png;base64," in meta["estimated_vs_realized"].value
        estimated = report.estimated
        assert estimated.evaluated and estimated.rows == ROWS
        f1 = estimated.metrics["f1"]
        assert f1.low <= f1.estimate <= f1.high and not f1.degraded
        assert meta["estimated_f1"].value == round(f1.estimate, 4)
        [batch] = estimated.by_batch
        assert batch["batch"] == "batch_0002.parquet"
        assert batch["realized"] < batch["estimate"] - 0.2  # the limit, in the picture too
        # and in MLflow: a run of its own in the production version's experiment
        client = env.client()
        run = client.get_run(meta["mlflow_run_id"].value)
        prod = client.get_model_version_by_alias("fraud_detection", "production")
        assert run.info.experiment_id == client.get_run(prod.run_id).info.experiment_id
        assert run.data.tags["mlassets.production_version"] == str(prod.version)
        assert run.data.tags["mlassets.kind"] == "drift_report" and run.info.status == "FINISHED"
        assert run.data.metrics["estimated_f1"] == pytest.approx(f1.estimate)
        assert run.data.metrics["realized_f1"] < run.data.metrics["estimated_f1"] - 0.2
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"estimated_vs_realized.png", "drift_report.json"} <= artifacts
        scored = monitoring.output_for_node("scored_batches")
        assert len(scored) == ROWS
        assert list(scored.columns) == ["user_id", "_batch", "score", "prediction"]
        assert set(scored["_batch"]) == {"batch_0002.parquet"}
        assert scored["score"].between(0, 1).all() and set(scored["prediction"]) <= {0, 1}


def test_monitoring_judges_against_the_version_recent_data_read_even_after_a_promotion(
    tmp_path_factory,
):
    """recent_data is "what version N was not trained on", and reads the production version
    once. A promotion between it and drift_report (here: recent_data in one run, the alias moved,
    drift_report and scored_batches in the next) must not judge or score those rows against the
    new version: both use version N, carried in recent_data's provenance, and say so; the next
    recent_data reads the new version."""
    import mlflow
    from dagster import AssetKey

    from mlassets.ml.registry import mark_registered, promote, register

    with trained_world(tmp_path_factory.mktemp("promoted_between")) as (env, _):
        write_batch(env, "batch_0001.parquet", "none", 5, rows=2_000)
        job = env.defs().resolve_implicit_global_asset_job_def()

        def materialize(*assets: str) -> dict[str, dict]:
            result = job.execute_in_process(
                instance=env.instance,
                asset_selection=[AssetKey(a) for a in assets],
                raise_on_error=False,
            )
            assert result.success, assets
            return {
                a: {
                    k: v.value
                    for k, v in result.asset_materializations_for_node(a)[0].metadata.items()
                }
                for a in assets
            }

        assert materialize("recent_data")["recent_data"]["production_version"] == "1"
        # version 2 (version 1's model and reference registered again) promoted in between
        client = env.client()
        mlflow.set_tracking_uri(env.tracking_uri)  # `models:/m-...` resolves through it
        v1 = client.get_model_version("fraud_detection", "1")
        v2 = register(client, "fraud_detection", v1.source, v1.run_id, {}, model_id=v1.model_id)
        mark_registered(client, "fraud_detection", v2.version)
        promote(client, "fraud_detection", str(v2.version), holder="test")
        assert str(v2.version) == "2"

        judged = materialize("drift_report", "scored_batches")
        assert judged["drift_report"]["production_version"] == "1"
        assert judged["scored_batches"]["production_version"] == "1"
        drift_run = client.get_run(judged["drift_report"]["mlflow_run_id"])
        assert drift_run.data.tags["mlassets.production_version"] == "1"

        again = materialize("recent_data", "drift_report")  # recomputed: the new version
        assert again["recent_data"]["production_version"] == "2"
        assert again["drift_report"]["production_version"] == "2"
