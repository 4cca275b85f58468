"""Many models in one code location: a folder of dataset specs, one governed pipeline per spec.

The code location's own definitions are built from a folder (`MLASSETS_SPECS`) in a CLI home
and run in this process on that home's instance and MLflow store; the bad-spec case also goes
through the real `dagster definitions validate`.
"""

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from dagster import AssetKey, DagsterInstance, build_sensor_context

from mlassets.catalog import TRAINING_TAG, Model
from mlassets.spec import BUNDLED_SPECS, DEFAULT_SPEC
from mlassets.synthetic import BATCH_FIRST_ID, fraud_batch, fraud_frame, write_frame
from mlassets_tests.conftest import SERIAL_TRAINING, TEST_ROWS, empty_mlflow_store, process_env
from mlassets_tests.test_cli import CHURN_SPEC, DAGSTER, ROOT, churn_frame, cli_env
from mlassets_tests.test_graph import ALL_ASSETS

pytestmark = pytest.mark.integration

FRAUD, CHURN = "fraud_detection", "churn_model"
# one model's assets: the training job's, then monitoring's
STEPS = [*sorted(ALL_ASSETS), "recent_data", "drift_report", "scored_batches"]
CHURN_TRAINING = {**SERIAL_TRAINING, "param_grid": {"n_estimators": [30], "max_depth": [8]}}


def folder_env(root: Path, specs: Path, **extra: str) -> dict:
    """A CLI home whose code location serves every spec in `specs` (and nothing else)."""
    env = cli_env(root, None)
    del env["MLASSETS_SPEC"]
    env["MLASSETS_SPECS"] = str(specs)
    assert empty_mlflow_store(root / "mlflow.db") == env["MLFLOW_TRACKING_URI"]
    return {**env, **extra}


def sensor_resources(defs) -> dict:
    """The code location's resources a sensor tick uses (no run: no MLflow tracking)."""
    return {k: v for k, v in defs.resources.items() if not k.startswith("mlflow")}


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    """Two specs in one folder and one home, each model trained once by its own training job:
    (env, definitions, instance, the two runs by model)."""
    from mlassets.definitions import build_defs

    root = tmp_path_factory.mktemp("two_models")
    specs = root / "specs"
    specs.mkdir()
    shutil.copy(DEFAULT_SPEC, specs / "fraud.yaml")
    (specs / "churn.yaml").write_text(CHURN_SPEC + "landing: churn_landing\n")
    write_frame(fraud_frame(TEST_ROWS, seed=7), specs / "data" / "transactions.parquet")
    churn_frame().to_csv(specs / "customers.csv", index=False)
    retrain = root / "retrain.yaml"
    # written for any model: each model's sensor names the steps as its own
    retrain.write_text(yaml.safe_dump({"ops": {"candidate_model": {"config": SERIAL_TRAINING}}}))
    env = folder_env(
        root,
        specs,
        MLASSETS_DRIFT=json.dumps({"min_rows": 2000}),
        MLASSETS_RETRAIN_CONFIG=str(retrain),
    )
    with process_env(env):
        defs = build_defs()
        instance = DagsterInstance.from_config(env["DAGSTER_HOME"])
        try:
            runs = {}
            for name, training in ((FRAUD, SERIAL_TRAINING), (CHURN, CHURN_TRAINING)):
                m = Model(name, prefixed=True)
                runs[name] = defs.resolve_job_def(m.job("training_job")).execute_in_process(
                    run_config={"ops": {m.op("candidate_model"): {"config": training}}},
                    instance=instance,
                    raise_on_error=False,
                )
            yield env, defs, instance, runs
        finally:
            instance.dispose()


def client(env: dict):
    from mlflow import MlflowClient

    return MlflowClient(env["MLFLOW_TRACKING_URI"])


def test_the_bundled_folder_gives_each_model_its_own_graph_jobs_sensor_and_schedule(monkeypatch):
    from mlassets.definitions import build_defs

    for key in ("MLASSETS_SPEC", "MLASSETS_SPECS"):
        monkeypatch.delenv(key, raising=False)
    defs = build_defs()
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == {f"{name}/{step}" for name in (FRAUD, CHURN) for step in STEPS}
    checks = {f"{c.asset_key.to_user_string()}:{c.name}" for c in graph.asset_check_keys}
    groups = {graph.get(k).group_name for k in graph.get_all_asset_keys()}
    assert groups == {
        f"{name}_{group}"
        for name in (FRAUD, CHURN)
        for group in ("data", "features", "training", "evaluation", "registry", "monitoring")
    }
    for name in (FRAUD, CHURN):
        assert {f"{name}/raw_data:not_null", f"{name}/evaluation_report:f1_gate"} <= checks
        assert f"{name}/staging_model:staging_predicts_identically" in checks
        for base in ("training_job", "monitoring_job", "rollback_job"):
            assert defs.resolve_job_def(f"{name}_{base}")
        training = defs.resolve_job_def(f"{name}_training_job")
        assert training.tags[TRAINING_TAG] == name
        # the training job holds this model's assets and checks only
        selected = {k.to_user_string() for k in training.asset_layer.selected_asset_keys}
        assert selected == {f"{name}/{s}" for s in ALL_ASSETS}
        assert defs.get_sensor_def(f"{name}_drift_sensor").job_name == f"{name}_training_job"
        schedule = defs.get_schedule_def(f"{name}_daily_monitoring")
        assert schedule.job_name == f"{name}_monitoring_job"
    # one tracking resource for every model (each model's runs in its own experiment: below)
    assert [k for k in defs.resources if k.startswith("mlflow")] == ["mlflow"]
    with pytest.raises(Exception, match="training_job"):
        defs.resolve_job_def("training_job")


def test_mlassets_spec_keeps_one_model_under_todays_names(monkeypatch):
    from mlassets.definitions import build_defs

    monkeypatch.delenv("MLASSETS_SPECS", raising=False)
    monkeypatch.setenv("MLASSETS_SPEC", str(DEFAULT_SPEC))
    defs = build_defs()
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert keys == set(STEPS)
    assert defs.resolve_job_def("training_job").tags[TRAINING_TAG] == FRAUD
    assert defs.get_sensor_def("drift_sensor") and "mlflow" in defs.resources


def test_mlassets_spec_and_mlassets_specs_together_are_refused(monkeypatch):
    from mlassets import settings
    from mlassets.spec import SpecError

    monkeypatch.setenv("MLASSETS_SPEC", str(DEFAULT_SPEC))
    monkeypatch.setenv("MLASSETS_SPECS", str(BUNDLED_SPECS))
    with pytest.raises(SpecError, match="MLASSETS_SPEC=.* and MLASSETS_SPECS=.* are both set"):
        settings.specs_dir()


def test_run_config_written_for_any_model_is_given_each_models_step_names():
    ops = {"candidate_model": {"config": {"n_jobs": 1}}, "churn_model__splits": {"config": {}}}
    fraud, churn = Model(FRAUD, prefixed=True), Model(CHURN, prefixed=True)
    assert fraud.run_config_for(ops) == {"fraud_detection__candidate_model": ops["candidate_model"]}
    assert churn.run_config_for(ops) == {
        "churn_model__candidate_model": ops["candidate_model"],
        "churn_model__splits": {"config": {}},
    }
    assert Model(FRAUD).run_config_for(ops) == ops  # one model: names as written


def test_two_models_in_one_home_train_side_by_side(two_models):
    env, defs, instance, runs = two_models
    for name, result in runs.items():
        assert result.success, name
        assert result.dagster_run.job_name == f"{name}_training_job"
        assert result.dagster_run.tags[TRAINING_TAG] == name
    mlflow = client(env)
    for name in (FRAUD, CHURN):
        # its own registered model, version 1 behind production, logged in its own experiment
        version = mlflow.get_model_version_by_alias(name, "production")
        assert str(version.version) == "1"
        experiment = mlflow.get_experiment(mlflow.get_run(version.run_id).info.experiment_id)
        assert experiment.name == name
        # its own values, under its own name, as the asset keys say
        for step in ("raw_data", "candidate_model", "production_model"):
            assert instance.get_latest_materialization_event(AssetKey([name, step])) is not None
        assert (Path(env["MLASSETS_HOME"]) / "storage" / name / "raw_data" / "LATEST").is_file()
    assert instance.get_latest_materialization_event(AssetKey("raw_data")) is None
    # each run's checks are its own model's
    for name, result in runs.items():
        evaluated = {e.asset_key.path[0] for e in result.get_asset_check_evaluations()}
        assert evaluated == {name}


def test_a_selection_of_one_model_reads_only_that_models_values(two_models):
    env, defs, instance, _ = two_models
    job = defs.resolve_implicit_global_asset_job_def()
    with process_env(env):
        partial = job.execute_in_process(
            instance=instance,
            asset_selection=[AssetKey([FRAUD, "features"])],
            raise_on_error=False,
        )
    assert partial.success
    features = partial.output_for_node(f"{FRAUD}__features").frame
    assert "purchase_frequency" in features.columns and "customer_age" not in features.columns


def test_a_drifted_batch_retrains_only_its_own_model(two_models):
    env, defs, instance, _ = two_models
    specs = Path(env["MLASSETS_SPECS"])
    write_frame(
        fraud_batch(3000, 21, "covariate", first_id=BATCH_FIRST_ID),
        specs / "data" / "landing" / "batch_0001.parquet",
    )
    resources = sensor_resources(defs)
    outcomes = {}
    with process_env(env):
        for name in (FRAUD, CHURN):
            sensor = defs.get_sensor_def(f"{name}_drift_sensor")
            context = build_sensor_context(instance=instance, resources=resources)
            outcomes[name] = sensor(context)
    churn = outcomes[CHURN]
    assert not churn.run_requests
    assert churn.skip_reason.skip_message.startswith("no new batches")
    (request,) = outcomes[FRAUD].run_requests
    assert request.tags["mlassets/trigger"] == "drift_sensor"
    assert request.run_key.startswith(f"retrain-{FRAUD}-")
    ops = request.run_config["ops"]
    assert ops[f"{FRAUD}__raw_data"]["config"]["batches"] == ["batch_0001.parquet"]
    assert ops[f"{FRAUD}__candidate_model"]["config"] == SERIAL_TRAINING
    assert set(ops) == {f"{FRAUD}__raw_data", f"{FRAUD}__candidate_model"}

    # the run it asks for retrains fraud_detection; churn_model is left as it was
    job = defs.resolve_job_def(f"{FRAUD}_training_job")
    with process_env(env):
        retrain = job.execute_in_process(
            run_config=request.run_config,
            tags=request.tags,
            instance=instance,
            raise_on_error=False,
        )
    assert retrain.success
    mlflow = client(env)
    assert str(mlflow.get_model_version_by_alias(FRAUD, "production").version) == "2"
    assert [str(v.version) for v in mlflow.search_model_versions(f"name='{CHURN}'")] == ["1"]


def test_a_bad_spec_beside_good_ones_is_shown_by_name_and_the_others_load(tmp_path):
    from mlassets.definitions import build_defs

    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "churn.yaml").write_text(CHURN_SPEC)
    broken = yaml.safe_load(DEFAULT_SPEC.read_text())
    broken["name"] = "broken_model"
    del broken["label"]
    (specs / "broken.yaml").write_text(yaml.safe_dump(broken))
    (specs / "broken.yml").write_text("name: [")  # the same stem, another file
    # two files of one model: which is the model is the user's to say, so neither is served
    shutil.copy(DEFAULT_SPEC, specs / "fraud.yaml")
    shutil.copy(DEFAULT_SPEC, specs / "same_name.yaml")
    (specs / "notes.txt").write_text("not a spec")
    env = folder_env(tmp_path, specs)
    shown = ["broken_yaml", "broken_yml", "fraud_yaml", "same_name_yaml"]

    with process_env(env):
        defs = build_defs()
        graph = defs.resolve_asset_graph()
        keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
        assert keys == {f"{CHURN}/{step}" for step in STEPS} | {f"{s}/dataset_spec" for s in shown}
        assert defs.resolve_job_def(f"{CHURN}_training_job")

        def description(stem: str) -> str:
            key = AssetKey([stem, "dataset_spec"])
            return defs.get_assets_def(key).descriptions_by_key[key]

        assert "broken.yaml" in description("broken_yaml") and "label" in description("broken_yaml")
        assert "broken.yml is not valid YAML" in description("broken_yml")
        for stem in ("fraud_yaml", "same_name_yaml"):
            said = description(stem)
            assert "model name 'fraud_detection' is also the name in" in said
            assert "fraud.yaml" in said and "same_name.yaml" in said

        # materializing it fails with the loader's message: nothing else runs
        instance = DagsterInstance.from_config(env["DAGSTER_HOME"])
        try:
            result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
                instance=instance,
                asset_selection=[AssetKey(["broken_yaml", "dataset_spec"])],
                raise_on_error=False,
            )
        finally:
            instance.dispose()
    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    assert "broken.yaml" in failure.step_failure_data.error.message
    assert "label" in failure.step_failure_data.error.message

    # `dagster definitions validate` passes (the good model loads) and says which spec failed
    proc = subprocess.run(
        [DAGSTER, "definitions", "validate", "-m", "mlassets.definitions"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    said = proc.stdout + proc.stderr
    assert proc.returncode == 0, said[-3000:]
    assert f"a spec is not served (the others are): dataset spec {specs / 'broken.yaml'}" in said
    assert "label: Field required" in said
    assert f"not served (the others are): dataset spec {specs / 'same_name.yaml'}: model" in said


def test_the_workspace_is_the_bundled_folder():
    """`make dev`, `dg` and the daemon load `mlassets.definitions`: by default both bundled models."""
    from mlassets.catalog import catalog

    assert {m.name for m in catalog(None, str(BUNDLED_SPECS)).models} == {FRAUD, CHURN}
    assert "mlassets.definitions" in (ROOT / "workspace.yaml").read_text()
