"""The whole graph, in process, on a real Dagster instance and a real MLflow registry."""

import json

import pytest

from mlassets.ml.evaluation import METRICS
from mlassets_tests.conftest import run_config

pytestmark = pytest.mark.integration

ALL_ASSETS = {
    "raw_data",
    "features",
    "train_set",
    "validation_set",
    "test_set",
    "candidate_model",
    "evaluation_report",
    "registered_model",
    "staging_model",
    "production_model",
}
DOWNSTREAM_OF_RAW = ALL_ASSETS - {"raw_data"}


def materialized(result) -> set[str]:
    return {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}


def checks(result) -> dict[str, object]:
    return {c.check_name: c for c in result.get_asset_check_evaluations()}


def versions(client, name: str) -> list[str]:
    return sorted(str(mv.version) for mv in client.search_model_versions(f"name='{name}'"))


def alias(client, name: str, alias_name: str) -> str | None:
    from mlassets.ml.registry import alias_version

    return alias_version(client, name, alias_name)


def mlflow_runs(env):
    import mlflow

    mlflow.set_tracking_uri(env.tracking_uri)
    return mlflow.search_runs(search_all_experiments=True)


def test_whole_graph_materializes_and_promotes(env):
    result = env.run()
    assert result.success
    assert materialized(result) == ALL_ASSETS
    evaluations = checks(result)
    assert len(evaluations) == 21
    assert all(c.passed for c in evaluations.values()), {
        n: c.metadata for n, c in evaluations.items() if not c.passed
    }

    client = env.client()
    assert versions(client, "fraud_detection") == ["1"]
    assert alias(client, "fraud_detection", "staging") == "1"
    assert alias(client, "fraud_detection", "production") == "1"
    assert alias(client, "fraud_detection", "previous") is None

    report = result.output_for_node("evaluation_report")
    assert set(report.metrics) == set(METRICS)
    assert report.metrics["f1"] >= 0.80 and report.metrics["accuracy"] >= 0.85

    mv = client.get_model_version("fraud_detection", "1")
    run = client.get_run(mv.run_id)
    for metric in METRICS:
        assert run.data.metrics[f"test_{metric}"] == pytest.approx(report.metrics[metric])
    assert run.data.params["strategy"] == "grid"
    assert mv.tags["dagster_run_id"] == result.run_id
    assert len(mv.tags["data_fingerprint"]) == 16
    gates = json.loads(mv.tags["gates"])
    # no absolute floor by default: the trivial baseline's margin gates instead
    assert gates["f1_gate"]["passed"] and gates["f1_gate"]["threshold"] is None
    assert gates["beats_baseline"]["passed"] and gates["beats_baseline"]["threshold"] > 0.05
    assert report.limits["min_lift"].model_dump() == {"value": 0.05, "source": "the default"}

    # one MLflow run per Dagster run, closed (never left RUNNING)
    runs = mlflow_runs(env)
    assert list(runs["status"]) == ["FINISHED"]
    assert list(runs["tags.dagster_run_id"]) == [result.run_id]

    # the model is stored as skops, not pickle
    import mlflow

    flavor = mlflow.models.get_model_info("models:/fraud_detection/1").flavors["sklearn"]
    assert flavor["serialization_format"] == "skops"

    # the drift reference travels with the version: a fresh process needs nothing else
    from mlassets.ml.registry import load_reference

    ref_version, sample, baseline = load_reference(
        client, "fraud_detection", tracking_uri=env.tracking_uri
    )
    assert str(ref_version.version) == "1"
    assert "purchase_frequency" in sample.columns and "label" in sample.columns
    assert (
        len(sample) == baseline["train_rows"] == len(result.output_for_node("splits", "train_set"))
    )
    assert baseline["metrics"] == pytest.approx(report.metrics)
    assert baseline["batches"] == []

    # the search reported its progress in the run log
    messages = [e.message for e in env.instance.all_logs(result.run_id) if e.message]
    assert any("search: 1/1 configurations, best f1" in m for m in messages)


def test_default_strategy_trains_boosting_through_the_graph_and_registers_it(env):
    """TrainingConfig's defaults (strategy `fast`) through Dagster: the strategy brings its own
    estimator, the search halves its grid, and skops stores the boosted trees."""
    from mlassets.ml.training import FAST_SPACE

    result = env.run(config=run_config({"cv_folds": 3, "n_jobs": 2}))
    assert result.success
    assert materialized(result) == ALL_ASSETS
    meta = {
        e.asset_key.to_user_string(): e.step_materialization_data.materialization.metadata
        for e in result.get_asset_materialization_events()
    }["candidate_model"]
    assert meta["strategy"].value == "fast"
    assert meta["estimator"].value == "hist_gradient_boosting"
    assert meta["best_params"].value["max_depth"] in FAST_SPACE["max_depth"]
    client = env.client()
    assert alias(client, "fraud_detection", "production") == "1"
    run = client.get_run(client.get_model_version("fraud_detection", "1").run_id)
    assert run.data.params["estimator"] == "hist_gradient_boosting"
    assert run.data.metrics["test_f1"] >= 0.80

    from mlassets.ml.registry import load_verified_model

    model = load_verified_model(client, "fraud_detection", "1")
    assert type(model.estimator.estimator.named_steps["estimator"]).__name__ == (
        "HistGradientBoostingClassifier"
    )


def test_rerun_is_deterministic_and_keeps_previous_for_rollback(trained_env):
    client = trained_env.client()
    first = client.get_model_version(
        "fraud_detection", alias(client, "fraud_detection", "production")
    )
    result = trained_env.run()
    assert result.success
    second = client.get_model_version(
        "fraud_detection", alias(client, "fraud_detection", "production")
    )
    assert int(second.version) == int(first.version) + 1
    assert alias(client, "fraud_detection", "previous") == str(first.version)
    for metric in METRICS:
        assert second.tags[f"test_{metric}"] == first.tags[f"test_{metric}"]
    assert second.tags["data_fingerprint"] == first.tags["data_fingerprint"]

    rollback = trained_env.run("rollback_job", {})
    assert rollback.success
    assert alias(client, "fraud_detection", "production") == str(first.version)
    assert alias(client, "fraud_detection", "staging") == str(first.version)
    assert alias(client, "fraud_detection", "previous") is None
    # idempotent: a second rollback has no recorded target and changes nothing
    assert not trained_env.run("rollback_job", {}).success
    assert alias(client, "fraud_detection", "production") == str(first.version)
    # put production back where the rest of the module expects it, by an explicit target
    to_second = {"ops": {"rollback_production": {"config": {"to_version": str(second.version)}}}}
    assert trained_env.run("rollback_job", to_second).success
    assert alias(client, "fraud_detection", "production") == str(second.version)


def test_impossible_gate_leaves_registry_and_production_untouched(trained_env):
    client = trained_env.client()
    before_versions = versions(client, "fraud_detection")
    before_production = alias(client, "fraud_detection", "production")

    result = trained_env.run(config=run_config(gates={"min_f1": 0.999}))

    assert not result.success
    gate = checks(result)["f1_gate"]
    assert not gate.passed
    assert "f1" in gate.description and "0.999" in gate.description
    assert checks(result)["accuracy_gate"].passed
    done = materialized(result)
    assert "evaluation_report" in done
    assert not done & {"registered_model", "staging_model", "production_model"}
    assert versions(client, "fraud_detection") == before_versions
    assert alias(client, "fraud_detection", "production") == before_production
    runs = mlflow_runs(trained_env)
    assert "RUNNING" not in set(runs["status"])
    # one short block: the figure against its limit, where the limit came from, what to write
    (event,) = [
        e
        for e in result.get_asset_materialization_events()
        if e.asset_key.to_user_string() == "evaluation_report"
    ]
    advice = event.materialization.metadata["gate_advice"].value
    f1 = result.output_for_node("evaluation_report").metrics["f1"]
    floor = int(f1 * 100) / 100
    assert f"f1_gate: f1 = {f1:.4f} < 0.999 (min_f1) [min_f1 from the run config]" in advice
    assert f"gates: {{min_f1: {floor}}}" in advice and "fraud.yaml" in advice
    assert f"ops: {{evaluation_report: {{config: {{min_f1: {floor}}}}}}}" in advice
    assert len(advice.splitlines()) <= 8 + 2  # the block and its code fence
    logged = [e.message for e in trained_env.instance.all_logs(result.run_id) if e.message]
    assert any(m.startswith("1 gate(s) failed, so nothing was registered") for m in logged)


def test_a_models_gates_live_in_its_spec_and_a_run_can_still_set_them(trained_env, tmp_path):
    """The spec's `gates` set its model's limits (here an F1 floor no model reaches, and the
    fairness gate off); a run's config still sets any limit for that run."""
    import dataclasses

    import yaml

    from mlassets.spec import DEFAULT_SPEC

    raw = yaml.safe_load(DEFAULT_SPEC.read_text())
    raw["gates"] = {"min_f1": 0.999, "max_equalized_odds": None}
    spec = tmp_path / "fraud.yaml"
    spec.write_text(yaml.safe_dump(raw, sort_keys=False))  # columns in their order
    own = dataclasses.replace(trained_env, spec_path=spec)

    refused = own.run()
    assert not refused.success
    report = refused.output_for_node("evaluation_report")
    assert report.limits["min_f1"].model_dump() == {"value": 0.999, "source": "the spec's gates"}
    assert report.limits["max_equalized_odds"].model_dump() == {
        "value": None,
        "source": "the spec's gates",
    }
    assert report.limits["min_lift"].source == "the default"
    gate = checks(refused)["f1_gate"]
    assert not gate.passed and "0.999" in gate.description
    (event,) = [
        e
        for e in refused.get_asset_materialization_events()
        if e.asset_key.to_user_string() == "evaluation_report"
    ]
    advice = event.materialization.metadata["gate_advice"].value
    assert "[min_f1 from the spec's gates]" in advice and str(spec) in advice

    accepted = own.run(config=run_config(gates={"min_f1": 0.5}))
    assert accepted.success
    report = accepted.output_for_node("evaluation_report")
    assert report.limits["min_f1"].model_dump() == {"value": 0.5, "source": "the run config"}


def test_registering_without_passed_gates_is_refused(trained_env):
    """A partial run that skips the gates cannot register: the evaluation it is given (the one
    that failed f1_gate) carries its verdicts, and those are what registration reads."""
    client = trained_env.client()
    before = versions(client, "fraud_detection")
    failed_gate = trained_env.run(config=run_config(gates={"min_f1": 0.999}))
    assert not failed_gate.success
    job = trained_env.defs().resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(
        instance=trained_env.instance,
        asset_selection=[__import__("dagster").AssetKey("registered_model")],
        raise_on_error=False,
    )
    assert not result.success
    assert "gates not passed" in str(result.get_step_failure_events()[0].step_failure_data.error)
    assert versions(client, "fraud_detection") == before
    # the refusal is recorded on the run's MLflow run, and nothing is left active or RUNNING
    import mlflow

    runs = mlflow_runs(trained_env)
    refused = runs[runs["tags.dagster_run_id"] == result.run_id]
    assert list(refused["status"]) == ["FAILED"]
    assert "RUNNING" not in set(runs["status"])
    assert mlflow.active_run() is None


def _materialize(env, *keys: str):
    from dagster import AssetKey

    job = env.defs().resolve_implicit_global_asset_job_def()
    return job.execute_in_process(
        instance=env.instance,
        asset_selection=[AssetKey(k) for k in keys],
        raise_on_error=False,
    )


def _failure(result) -> str:
    return " ".join(str(e.step_failure_data.error) for e in result.get_step_failure_events())


def test_after_a_rollback_stale_staging_and_production_values_cannot_undo_it(trained_env):
    """The newest staging/production values name the version rolled back from: materializing
    `production_model` alone, or `staging_model,production_model`, must not re-promote it."""
    client = trained_env.client()
    assert trained_env.run().success  # a fresh version in production, its values the newest
    rolled_from = alias(client, "fraud_detection", "production")
    assert trained_env.run("rollback_job", {}).success
    target = alias(client, "fraud_detection", "production")
    assert target != rolled_from

    alone = _materialize(trained_env, "production_model")
    assert not alone.success
    assert f"@staging is version {target}" in _failure(alone)

    restaged = _materialize(trained_env, "staging_model", "production_model")
    assert not restaged.success
    assert "rolled_back" in _failure(restaged) or "evaluated against" in _failure(restaged)

    assert alias(client, "fraud_detection", "production") == target
    assert alias(client, "fraud_detection", "staging") == target
