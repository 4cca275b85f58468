"""The `mlflow` resource (issue 24.7): one resource key for every model, each model's run found
by its Dagster run's tag or created through an explicit client, and nothing of MLflow's or the
environment's left behind in the process once a step is done."""

import os
import threading

import dagster as dg
import mlflow
import pytest
from mlflow import MlflowClient

from mlassets.ml.owner import OWNER_ENV, OWNER_TAG
from mlassets.ml.runs import find_or_create_run
from mlassets.resources import MlflowTracking

pytestmark = pytest.mark.integration


def test_two_steps_creating_one_run_at_once_both_log_to_the_oldest(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("m", artifact_location=(tmp_path / "art").as_uri())
    for attempt in range(5):
        key = {"dagster_run_id": f"run-{attempt}"}
        start, found = threading.Barrier(2), []

        def create(key=key, start=start, found=found):
            start.wait()
            found.append(find_or_create_run(MlflowClient(uri), experiment, key, "job", {}))

        threads = [threading.Thread(target=create) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        live = client.search_runs([experiment], f"tags.dagster_run_id = '{key['dagster_run_id']}'")
        assert len(found) == 2 and found[0] == found[1]
        assert [r.info.run_id for r in live] == [found[0]]


def test_one_resource_serves_every_model_and_leaves_the_process_as_it_was(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracking = MlflowTracking(
        tracking_uri=uri, artifact_location=str(tmp_path / "art"), extra_tags={"team": "risk"}
    )
    uri_before = os.environ.get("MLFLOW_TRACKING_URI")
    assert OWNER_ENV not in os.environ

    @dg.asset(required_resource_keys={"mlflow"})
    def logs(context: dg.AssetExecutionContext) -> dict:
        # inside the step: MLflow's fluent calls log to this store, and the step's children
        # inherit the owner's identity
        assert mlflow.get_tracking_uri() == uri
        assert os.environ[OWNER_ENV]
        first = {m: context.resources.mlflow.run_for(context, m) for m in ("fraud", "churn")}
        again = context.resources.mlflow.run_for(context, "fraud")
        # another process's step finds the run by its tag (a fresh resource has no memory)
        found = MlflowTracking(tracking_uri=uri).run_for(context, "fraud")
        return {**first, "again": again, "found": found}

    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([logs], resources={"mlflow": tracking}, instance=instance)
    ids = result.output_for_node("logs")
    assert ids["fraud"] == ids["again"] == ids["found"] != ids["churn"]

    client = MlflowClient(uri)
    for model in ("fraud", "churn"):
        experiment = client.get_experiment_by_name(model)
        assert experiment.artifact_location == (tmp_path / "art").resolve().as_uri()
        (run,) = client.search_runs([experiment.experiment_id])
        assert run.info.run_id == ids[model]
        assert run.info.run_name == result.dagster_run.job_name  # the job, as MLflow lists it
        assert run.data.tags["dagster_run_id"] == result.run_id
        assert run.data.tags["team"] == "risk"
        assert run.data.tags[OWNER_TAG]
    # the same resource object in the next run: that run's own MLflow runs, not the first's
    again = dg.materialize([logs], resources={"mlflow": tracking}, instance=instance)
    assert again.output_for_node("logs")["fraud"] != ids["fraud"]
    # after the step: neither MLflow's tracking URI nor the owner's mark stays in this process
    assert os.environ.get("MLFLOW_TRACKING_URI") == uri_before
    assert OWNER_ENV not in os.environ


def test_a_core_step_never_moves_mlflows_tracking_uri(tmp_path):
    from mlassets.ml.steps import active_run

    here, elsewhere = (f"sqlite:///{tmp_path / name}" for name in ("here.db", "elsewhere.db"))
    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(here)
    try:
        refused = pytest.raises(RuntimeError, match="elsewhere.db.*set it where the process starts")
        with refused, active_run(MlflowClient(elsewhere), "any-run"):
            pass
        assert mlflow.get_tracking_uri() == here
    finally:
        mlflow.set_tracking_uri(before)
