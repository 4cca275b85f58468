"""Production rows as they land: no label column, labels that arrive later in files keyed by id.

On a real instance and MLflow store: the bundled fraud spec through the drift sensor and the
retraining run it requests, and a spec in a folder of the user's own through monitoring_job.
"""

import json

import numpy as np
import pandas as pd
import pytest

from mlassets.synthetic import write_batches, write_frame
from mlassets_tests.conftest import Env, trained_world
from mlassets_tests.conftest import sensor_outcome as outcome
from mlassets_tests.conftest import sensor_tick as tick
from mlassets_tests.test_cli import CHURN_SPEC, churn_frame

pytestmark = pytest.mark.integration

ROWS = 12_000


def test_labels_that_arrive_later_join_by_id_and_the_retrain_learns_from_them(tmp_path_factory):
    root = tmp_path_factory.mktemp("labels_later")
    with trained_world(root) as (env, _):
        labels = env.data_root / "data" / "labels"
        staged = root / "staged"  # where the labels wait until they "arrive"
        [path] = write_batches(env.landing, 1, ROWS, seed=61, drift="covariate", labels_out=staged)
        assert "label" not in pd.read_parquet(path).columns  # it landed as production rows do
        truth = pd.read_csv(staged / "labels_0001.csv")

        # no label yet: drift decides "retrain", but nothing can be trained on
        first = tick(env)
        requests, skip = outcome(first)
        assert requests == [] and skip.startswith("retrain: feature drift")
        assert "but no batch has its labels yet; waiting for labels: batch_0001.parquet" in skip
        assert set(json.loads(first.cursor)) == {"batch_0001.parquet"}

        # half the labels arrive: a new file is something new to judge; still waiting
        labels.mkdir(parents=True)
        write_frame(truth.iloc[: ROWS // 2], labels / "labels_a.csv")
        second = tick(env, first.cursor)
        requests, skip = outcome(second)
        assert requests == [] and "waiting for labels: batch_0001.parquet" in skip
        assert f"labels: {ROWS // 2:,} recent row(s) labelled from 1 label file(s)" in skip
        assert json.loads(second.cursor)["labels/labels_a.csv"]

        # the rest arrive, with one id labelled twice alike and one unknown id
        rest = pd.concat(
            [truth.iloc[ROWS // 2 :], truth.iloc[:1], pd.DataFrame({"user_id": [7], "label": [1]})]
        )
        write_frame(rest.iloc[:, [1, 0]], labels / "labels_b.parquet")  # label, id order
        third = tick(env, second.cursor)
        requests, skip = outcome(third)
        assert len(requests) == 1, skip
        request = requests[0]
        assert request.run_config["ops"]["raw_data"]["config"]["batches"] == ["batch_0001.parquet"]
        assert request.tags["mlassets/label_files"] == "labels_a.csv,labels_b.parquet"
        assert request.tags["mlassets/unreliable_batches"] == "none"
        # the run_key covers the label files: the same batch with other labels is new evidence
        write_frame(truth.iloc[:10], labels / "labels_c.csv")
        assert outcome(tick(env, third.cursor))[0][0].run_key != request.run_key
        (labels / "labels_c.csv").unlink()

        # before retraining, the monitoring job shows the joined labels and realized figures
        monitoring = env.run("monitoring_job", {})
        assert monitoring.success
        meta = {
            e.asset_key.to_user_string(): e.materialization.metadata
            for e in monitoring.get_asset_materialization_events()
        }
        join = meta["recent_data"]["label_join"].value
        assert join["joined"] == ROWS and join["duplicates"] == 1 and join["unmatched"] == 1
        assert join["unmatched_ids"] == [7] and meta["recent_data"]["labelled_rows"].value == ROWS
        report = monitoring.output_for_node("drift_report")
        [entry] = report.estimated.by_batch
        assert entry["labelled"] == ROWS and entry["realized"] is not None
        assert report.degradation.evaluated  # the joined labels measure the model
        # rows of the training population: the estimate is trusted, and says how far out they lie
        drift_meta = meta["drift_report"]
        assert drift_meta["estimate_reliable"].value is True
        assert drift_meta["unreliable_batches"].value == "none"
        assert 0 <= drift_meta["outside_training_range"].value <= 0.01
        mlflow_run = env.client().get_run(drift_meta["mlflow_run_id"].value)
        assert mlflow_run.data.tags["mlassets.estimate_reliable"] == "true"
        assert mlflow_run.data.metrics["outside_share"] <= 0.01

        # the retraining run joins the same labels and learns from every row
        client = env.client()
        run = (
            env.defs()
            .resolve_job_def("training_job")
            .execute_in_process(
                run_config=request.run_config,
                instance=env.instance,
                tags=request.tags,
                raise_on_error=False,
            )
        )
        assert run.success
        raw_rows = run.output_for_node("raw_data")
        raw, record = raw_rows.frame, raw_rows.provenance
        assert len(raw) == 6000 + ROWS and raw["label"].notna().all()
        joined = raw.iloc[6000:].reset_index(drop=True)
        assert (joined["label"].to_numpy() == truth["label"].to_numpy()).all()
        prod = client.get_model_version_by_alias("fraud_detection", "production")
        assert str(prod.version) == "2"
        from mlassets.ml.monitoring import production

        stored = production(client, "fraud_detection").baseline  # what the version was made from
        assert [b["name"] for b in stored["batches"]] == ["batch_0001.parquet"]
        assert [f["name"] for f in stored["label_files"]] == ["labels_a.csv", "labels_b.parquet"]
        assert [f["name"] for f in record["label_files"]] == ["labels_a.csv", "labels_b.parquet"]
        assert (labels / "labels_a.csv").exists() and not (env.landing / "labels_a.csv").exists()
        assert "label" not in pd.read_parquet(path).columns  # the batch was never rewritten


# the test_cli churn table, with the id its label files join on and two folders of its own
OWN_SPEC = CHURN_SPEC.replace(
    "name: churn_model\n",
    "name: own_churn\nlanding: incoming\nlabels: incoming_labels\nid: customer\n",
).replace("columns:\n", "columns:\n  customer: {type: string, nullable: false, unique: true}\n")


def own_rows(rows: int, seed: int, first: int) -> pd.DataFrame:
    df = churn_frame(rows, seed)
    df.insert(0, "customer", [f"c{i:07d}" for i in range(first, first + rows)])
    return df


def test_a_spec_of_the_users_own_takes_rows_without_labels_and_labels_by_file(
    tmp_path, dagster_instance
):
    folder = tmp_path / "own"
    folder.mkdir()
    (folder / "spec.yaml").write_text(OWN_SPEC)
    own_rows(3000, 3, 0).to_csv(folder / "customers.csv", index=False)
    env = Env(
        root=tmp_path,
        instance=dagster_instance,
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        spec_path=folder / "spec.yaml",
        data_root=folder,
        drift={"min_rows": 1_000},
    )
    training = {"strategy": "grid", "param_grid": {"n_estimators": [30], "max_depth": [8]}}
    assert env.run(
        config={"ops": {"candidate_model": {"config": {**training, "n_jobs": 1}}}}
    ).success

    first, second = own_rows(1500, 11, 10_000), own_rows(1500, 12, 20_000)
    write_frame(first.drop(columns="churned"), folder / "incoming" / "batch_0001.csv")
    write_frame(second.drop(columns="churned"), folder / "incoming" / "batch_0002.parquet")
    run = env.run("monitoring_job", {})
    assert run.success
    recent = run.output_for_node("recent_data").frame
    assert len(recent) == 3000 and recent["churned"].isna().all()
    report = run.output_for_node("drift_report")
    assert report.estimated.evaluated and report.estimated.reliable
    assert report.estimated.rows == 3000 and not report.degradation.evaluated
    assert len(run.output_for_node("scored_batches")) == 3000

    # the first batch's labels arrive: it has realized figures beside its estimate
    write_frame(first[["customer", "churned"]], folder / "incoming_labels" / "week_1.csv")
    run = env.run("monitoring_job", {})
    assert run.success
    recent = run.output_for_node("recent_data").frame
    by_batch = recent.groupby("_batch")["churned"].apply(lambda s: s.notna().sum()).to_dict()
    assert by_batch == {"batch_0001.csv": 1500, "batch_0002.parquet": 0}
    assert (recent.loc[recent["_batch"] == "batch_0001.csv", "churned"] == first["churned"]).all()
    entries = {e["batch"]: e for e in run.output_for_node("drift_report").estimated.by_batch}
    assert entries["batch_0001.csv"]["realized"] is not None
    assert entries["batch_0002.parquet"]["realized"] is None
    assert entries["batch_0002.parquet"]["labelled"] == 0
    assert abs(entries["batch_0001.csv"]["estimate"] - entries["batch_0001.csv"]["realized"]) < 0.2
    assert not (folder / "incoming" / "week_1.csv").exists()
    assert (
        np.isin(pd.read_csv(folder / "incoming" / "batch_0001.csv").columns, ["churned"]).sum() == 0
    )
