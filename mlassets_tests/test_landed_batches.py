"""Bad landed batches on a real instance and MLflow store: each is skipped by name with its
reason, the good ones still drive the decision, and `drift_sensor`'s tick skips on the
project's own errors and on failed services but raises a bug."""

import dataclasses
import json

import numpy as np
import pytest
from dagster import build_sensor_context

from mlassets.synthetic import BATCH_FIRST_ID, fraud_batch, write_frame

pytestmark = pytest.mark.integration

ROWS = 1_500
GOOD = ["batch_0001.parquet", "batch_0006.parquet"]
BAD = ["batch_0002.csv", "batch_0003.parquet", "batch_0004.parquet", "batch_0005.parquet"]


def batch(slot: int, drift: str = "covariate"):
    return fraud_batch(ROWS, 40 + slot, drift, first_id=BATCH_FIRST_ID + slot * 100_000)


def text_in_numeric(slot: int):
    df = batch(slot)
    df["feature_1"] = df["feature_1"].astype(object)
    df.loc[[4, 9, 10], "feature_1"] = ["abc", "12,5", "abc"]
    return df


@pytest.fixture(scope="module")
def world(trained_env):
    """The trained world with two good drifted batches and four bad ones between them; a
    retrain needs only 1,000 rows here, so two small batches can trigger one."""
    landing = trained_env.landing
    write_frame(batch(1), landing / "batch_0001.parquet")
    write_frame(text_in_numeric(2), landing / "batch_0002.csv")  # Parquet cannot mix types
    write_frame(batch(3).assign(feature_2=np.nan), landing / "batch_0003.parquet")
    unknown = batch(4)
    unknown.loc[[0, 5], "category"] = "toys"
    write_frame(unknown, landing / "batch_0004.parquet")
    write_frame(batch(5).drop(columns=["feature_2"]), landing / "batch_0005.parquet")
    write_frame(batch(6), landing / "batch_0006.parquet")
    return dataclasses.replace(trained_env, drift={"min_rows": 1_000})


def tick(env, cursor: str | None = None):
    # the code location's drift_sensor (one model: unprefixed names); its tick needs no tracking
    drift_sensor = env.defs().get_sensor_def("drift_sensor")
    resources = {k: v for k, v in env.resources().items() if k != "mlflow"}
    context = build_sensor_context(instance=env.instance, cursor=cursor, resources=resources)
    return drift_sensor(context)


def outcome(result):
    skip = result.skip_reason.skip_message if result.skip_reason else None
    return list(result.run_requests or []), skip


def assert_reasons(text: str) -> None:
    """Every bad batch named, with its check, column and offending values."""
    assert "batch_0002.csv: fails types_match_spec on column 'feature_1'" in text
    assert "'abc'" in text and "'12,5'" in text
    assert "batch_0003.parquet: fails features_not_empty on column 'feature_2'" in text
    assert "batch_0004.parquet: fails values_allowed on column 'category'" in text
    assert "'toys'" in text
    assert "batch_0005.parquet" in text and "missing ['feature_2']" in text


def test_monitoring_assets_skip_bad_batches_by_name_and_judge_the_rest(world):
    run = world.run("monitoring_job", {})
    assert run.success
    meta = {
        e.asset_key.to_user_string(): e.materialization.metadata
        for e in run.get_asset_materialization_events()
    }
    assert set(meta) >= {"recent_data", "drift_report", "scored_batches"}
    for asset in ("recent_data", "drift_report", "scored_batches"):
        skipped = meta[asset]["skipped_batches"].value
        assert [s["batch"] for s in skipped] == BAD, asset
        assert_reasons("\n".join(f"{s['batch']}: {s['reason']}" for s in skipped))

    recent = run.output_for_node("recent_data").frame
    assert sorted(set(recent["_batch"])) == GOOD and len(recent) == 2 * ROWS
    report = run.output_for_node("drift_report")
    assert report.rows == 2 * ROWS and report.retrain is True  # the good ones decide
    assert [s["batch"] for s in report.skipped_batches] == BAD
    scored = run.output_for_node("scored_batches")
    assert sorted(set(scored["_batch"])) == GOOD and len(scored) == 2 * ROWS


def test_sensor_judges_good_batches_names_bad_ones_and_a_fixed_batch_is_new(world):
    result = tick(world)
    requests, skip = outcome(result)
    assert len(requests) == 1, skip
    request = requests[0]
    raw_cfg = request.run_config["ops"]["raw_data"]["config"]
    assert raw_cfg["batches"] == GOOD and raw_cfg["consumed"] == GOOD
    assert request.tags["mlassets/skipped_batches"] == ",".join(BAD)
    assert_reasons(request.tags["mlassets/skipped_reasons"])
    cursor = json.loads(result.cursor)
    assert set(cursor) == {*GOOD, *BAD}  # bad batches are seen, not judged again every tick

    requests, skip = outcome(tick(world, result.cursor))
    assert requests == [] and skip.startswith("no new batches")

    # the same batches with too few rows to retrain on: a skip that names the bad batches
    strict = dataclasses.replace(world, drift={"min_rows": 1_000_000})
    requests, skip = outcome(tick(strict))
    assert requests == [] and skip.startswith("no retrain")
    assert_reasons(skip)

    # batch_0002.csv is fixed: new content, a new batch, judged and used
    write_frame(batch(2), world.landing / "batch_0002.csv")
    fixed = tick(world, result.cursor)
    requests, skip = outcome(fixed)
    assert len(requests) == 1, skip
    assert requests[0].run_config["ops"]["raw_data"]["config"]["batches"] == [
        "batch_0001.parquet",
        "batch_0002.csv",
        "batch_0006.parquet",
    ]
    assert "batch_0002.csv" not in requests[0].tags["mlassets/skipped_batches"]
    assert requests[0].run_key != request.run_key
    assert json.loads(fixed.cursor)["batch_0002.csv"] != cursor["batch_0002.csv"]


def test_a_landing_folder_that_errors_is_a_skip_not_a_raise(world, tmp_path):
    data_root = tmp_path / "root"
    (data_root / "data").mkdir(parents=True)
    landing = data_root / "data" / "landing"
    landing.write_text("a file where the landing folder should be")
    broken = dataclasses.replace(world, data_root=data_root)
    cursor = json.dumps({"batch_0001.parquet": "0123456789abcdef"})
    result = tick(broken, cursor)
    requests, skip = outcome(result)
    assert requests == []
    assert f"drift_sensor could not judge the batches in {landing}" in skip
    assert "DataError" in skip and "is not a folder" in skip
    assert result.cursor == cursor  # nothing marked seen: the next tick tries again


def test_a_registry_that_errors_is_a_skip_not_a_raise(world, tmp_path):
    store = tmp_path / "mlflow.db"
    store.write_text("not a database")
    broken = dataclasses.replace(world, tracking_uri=f"sqlite:///{store}")
    result = tick(broken)
    requests, skip = outcome(result)
    assert requests == []
    assert skip.startswith("drift_sensor could not judge the batches in")
    assert "DatabaseError" in skip and "file is not a database" in skip
    assert len(skip.encode()) <= 4_000
    assert result.cursor is None


def test_a_briefly_locked_registry_is_a_skip_that_says_it_passes(world):
    """A store another writer holds (a real SQLite lock, no busy wait) is a service's passing
    failure: the tick skips saying so, and the cursor stays put for the next tick."""
    import sqlite3

    db = world.tracking_uri.removeprefix("sqlite:///")
    locked = dataclasses.replace(world, tracking_uri=f"{world.tracking_uri}?timeout=0")
    holder = sqlite3.connect(db, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        result = tick(locked)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    requests, skip = outcome(result)
    assert requests == [] and result.cursor is None
    assert "database is locked" in skip, skip
    assert skip.endswith("(service (passing) error; the next tick tries again)"), skip


def test_a_bug_fails_the_tick_instead_of_a_skip(world, monkeypatch):
    """A bug is not a verdict on the world: the tick raises it (Dagster shows a failed tick with
    the traceback) rather than skipping every tick with no decision."""
    import mlassets.ml.monitoring

    def broken(*args, **kwargs):
        raise TypeError("unsupported operand type(s) for +: 'int' and 'str'")

    monkeypatch.setattr(mlassets.ml.monitoring, "recent", broken)
    with pytest.raises(Exception, match="unsupported operand type") as raised:
        tick(world)
    # Dagster wraps what the sensor raised; the bug is what it wraps
    chain, link = [], raised.value
    while link is not None:
        chain.append(type(link).__name__)
        link = link.__cause__ or link.__context__
    assert "TypeError" in chain, chain


def test_a_batch_whose_labels_have_not_arrived_shows_drift_but_is_not_trained_on(world):
    """Labels often arrive after the rows: a batch with an empty label column, and one that
    landed without the label column at all (the model's inputs only), pass their checks and
    count for drift, but a retraining run on them would fail raw_data's label checks, so they
    are neither trained on nor consumed (they stay recent until their labels arrive)."""
    from mlassets.ml.monitoring import production, recent

    write_frame(batch(7).assign(label=np.nan), world.landing / "batch_0007.parquet")
    write_frame(batch(8).drop(columns="label"), world.landing / "batch_0008.csv")
    waiting = ["batch_0007.parquet", "batch_0008.csv"]
    try:
        requests, skip = outcome(tick(world))
        assert len(requests) == 1, skip
        raw_cfg = requests[0].run_config["ops"]["raw_data"]["config"]
        assert not set(waiting) & set(raw_cfg["batches"] + raw_cfg["consumed"])
        assert raw_cfg["batches"] and set(raw_cfg["batches"]) <= {*GOOD, "batch_0002.csv"}
        assert "batch_0008" not in requests[0].tags["mlassets/skipped_batches"]
        spec = world.resources()["dataset"].spec()
        rec = recent(str(world.landing), spec, production(world.client(), spec.name))
        assert set(waiting) <= {b.name for b in rec.batches}
        rows = rec.rows[rec.rows["_batch"] == "batch_0008.csv"]
        assert len(rows) == ROWS and rows["label"].isna().all()
        assert list(rec.rows.columns[: len(spec.columns)]) == list(spec.columns)
    finally:
        for name in waiting:
            (world.landing / name).unlink()
