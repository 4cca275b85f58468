"""The real `dagster` CLI on the code location, as a user runs it."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from mlassets.spec import DEFAULT_SPEC

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
DAGSTER = str(Path(sys.executable).parent / "dagster")
# the embedded default's instance, as `make home` installs it (not at the root: see the file)
INSTANCE_YAML = ROOT / "deploy" / "local" / "dagster.yaml"

CHURN_SPEC = """
name: churn_model
source: customers.csv
label: {column: churned, positive: "yes"}
min_rows: 500
columns:
  customer_age: {type: float, min: 18, max: 100}
  tenure_months: {type: integer, min: 0}
  plan: {type: category, values: [basic, plus, pro]}
  monthly_spend: {type: float, min: 0}
  churned: {type: string, nullable: false, values: ["yes", "no"]}
features:
  numeric: [customer_age, tenure_months, monthly_spend]
  categorical: [plan]
"""


def churn_frame(rows: int = 3000, seed: int = 3) -> pd.DataFrame:
    """A table that is not the fraud schema: no id, no timestamp, a string label."""
    rng = np.random.default_rng(seed)
    tenure = rng.integers(0, 72, rows)
    spend = rng.gamma(3.0, 20.0, rows).round(2)
    plan = rng.choice(["basic", "plus", "pro"], rows)
    churn = (tenure < 12) & (spend > 60) | (plan == "basic") & (tenure < 4)
    return pd.DataFrame(
        {
            "customer_age": rng.uniform(18, 90, rows).round(1),
            "tenure_months": tenure,
            "plan": plan,
            "monthly_spend": spend,
            "churned": np.where(churn, "yes", "no"),
        }
    )


def cli_env(tmp_path: Path, spec: Path | None) -> dict:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(INSTANCE_YAML, home / "dagster.yaml")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "MLASSETS_HOME": str(tmp_path / "mlassets_home"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    env.pop("MLFLOW_REGISTRY_URI", None)  # the registry is the tracking store
    env.pop("MLASSETS_SPECS", None)
    # one model under today's names: the bundled fraud spec unless another is given (the
    # bundled folder of several models is test_many_models' and test_clients')
    env["MLASSETS_SPEC"] = str(spec or DEFAULT_SPEC)
    return env


def test_cli_materializes_a_non_fraud_table(tmp_path):
    data_dir = tmp_path / "churn"
    data_dir.mkdir()
    (data_dir / "spec.yaml").write_text(CHURN_SPEC)
    churn_frame().to_csv(data_dir / "customers.csv", index=False)
    config = tmp_path / "run_config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "ops": {
                    "candidate_model": {
                        "config": {
                            "strategy": "grid",
                            "param_grid": {"n_estimators": [30], "max_depth": [8]},
                            "cv_folds": 3,
                            "n_jobs": 2,
                        }
                    }
                }
            }
        )
    )
    env = cli_env(tmp_path, data_dir / "spec.yaml")
    proc = subprocess.run(
        [
            DAGSTER,
            "asset",
            "materialize",
            "-m",
            "mlassets.definitions",
            "--select",
            "*",
            "-c",
            str(config),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "RUN_SUCCESS" in proc.stderr

    from mlflow import MlflowClient

    client = MlflowClient(env["MLFLOW_TRACKING_URI"], env["MLFLOW_TRACKING_URI"])
    mv = client.get_model_version_by_alias("churn_model", "production")
    assert str(mv.version) == "1"
    assert float(mv.tags["test_f1"]) >= 0.8
    # artifacts went where the environment said, not into ./mlruns of the working folder
    assert not (tmp_path / "mlruns").exists()
    assert (tmp_path / "mlassets_home" / "mlartifacts").is_dir()

    summary = subprocess.run(
        [sys.executable, "-m", "mlassets.summary"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert summary.returncode == 0, summary.stderr[-2000:]
    assert "production model: churn_model version 1" in summary.stdout
    assert "checks passed: 21/21" in summary.stdout


def test_definitions_validate(tmp_path):
    proc = subprocess.run(
        [DAGSTER, "definitions", "validate", "-m", "mlassets.definitions"],
        cwd=ROOT,
        env=cli_env(tmp_path, None),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (
        "Validation successful for code location mlassets.definitions" in proc.stdout + proc.stderr
    )


def test_bad_spec_names_the_key(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text(CHURN_SPEC.replace("numeric: [customer_age,", "numeric: [age,"))
    proc = subprocess.run(
        [DAGSTER, "definitions", "validate", "-m", "mlassets.definitions"],
        cwd=ROOT,
        env=cli_env(tmp_path, spec),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "features.numeric[0]" in out and "'age'" in out


def test_readme_run_config_is_valid():
    """The run config the README shows is accepted as written by the training job it is written
    for: `fraud_detection_training_job` of the bundled folder when its steps are named
    `fraud_detection__...`, else `training_job` of one spec (MLASSETS_SPEC, the bundled fraud)."""
    from dagster import validate_run_config

    from mlassets.definitions import build_defs
    from mlassets_tests.conftest import process_env

    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- run-config -->", 1)[1].split("```yaml", 1)[1].split("```", 1)[0]
    config = yaml.safe_load(block)
    prefix = "fraud_detection__"
    folder = all(op.startswith(prefix) for op in config["ops"])
    env = {k: v for k, v in os.environ.items() if k not in ("MLASSETS_SPEC", "MLASSETS_SPECS")}
    if not folder:
        env["MLASSETS_SPEC"] = str(DEFAULT_SPEC)
    with process_env(env):  # neither set: the bundled folder
        job = build_defs().resolve_job_def(
            "fraud_detection_training_job" if folder else "training_job"
        )
    # raises DagsterInvalidConfigError naming the key it refuses
    assert validate_run_config(job, config)["ops"].keys() >= config["ops"].keys()
    report = f"{prefix}evaluation_report" if folder else "evaluation_report"
    assert config["ops"][report]["config"]["min_f1"] != 0.80


# What `make` exports and a command run as the README writes it, from the checkout, lacks.
HOME_VARIABLES = ("MLASSETS_HOME", "DAGSTER_HOME", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


def bare_env() -> dict:
    """This environment without the homes, the store or the specs: a fresh shell in the checkout
    (the bundled folder of specs; `.mlassets/` of the working folder by default)."""
    drop = (*HOME_VARIABLES, "MLASSETS_SPEC", "MLASSETS_SPECS")
    return {k: v for k, v in os.environ.items() if k not in drop}


def test_module_commands_without_a_home_say_so_in_one_line(tmp_path):
    """`python -m mlassets.summary` (and `mlassets.launch`) in a checkout where `make demo`
    never ran: one line naming the Dagster home they default to and what creates it; nothing
    written there."""
    expected = (
        f"no Dagster instance in {tmp_path.resolve() / '.mlassets' / 'dagster'} (DAGSTER_HOME) "
        "yet: `make demo` creates it"
    )
    for command in (["mlassets.summary"], ["mlassets.launch", "--job", "training_job"]):
        proc = subprocess.run(
            [sys.executable, "-m", *command],
            cwd=tmp_path,
            env=bare_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 1, (command, proc.stdout, proc.stderr[-3000:])
        assert proc.stderr.strip() == expected, (command, proc.stderr[-3000:])
        assert proc.stdout == ""
    assert list(tmp_path.iterdir()) == []


def run_job(env: dict, job: str, ops: dict | None = None):
    """One run of `job` of the code location served in the CLI home `env`, in this process (the
    state the command under test reads; its own launch is test_demo_launch's). Never raises."""
    from dagster import DagsterInstance

    from mlassets_tests.conftest import process_env

    with process_env(env):
        from mlassets.definitions import build_defs

        job_def = build_defs().resolve_job_def(job)
        instance = DagsterInstance.from_config(env["DAGSTER_HOME"])
        try:
            return job_def.execute_in_process(
                run_config={"ops": ops or {}}, instance=instance, raise_on_error=False
            )
        finally:
            instance.dispose()


def test_summary_from_the_checkout_says_which_version_serves_and_why(tmp_path):
    """The bundled folder in `<checkout>/.mlassets`, the default home: fraud_detection trained
    twice, rolled back to version 1, then retrained with a gate it fails. `python -m
    mlassets.summary`, as written, prints fraud then churn, and says that version 1 serves since
    the rollback and that production was kept after the refused retrain, and why."""
    from dagster import DagsterInstance

    from mlassets.summary import summarize
    from mlassets.synthetic import fraud_frame, write_frame
    from mlassets_tests.conftest import NAME, SERIAL_TRAINING, TEST_ROWS, empty_mlflow_store
    from mlassets_tests.test_many_models import CHURN

    home = tmp_path / ".mlassets"
    (home / "dagster").mkdir(parents=True)
    shutil.copy(INSTANCE_YAML, home / "dagster" / "dagster.yaml")
    uri = empty_mlflow_store(home / "mlflow.db")
    write_frame(fraud_frame(TEST_ROWS, seed=7), home / "data" / "transactions.parquet")
    env = {**bare_env(), "MLASSETS_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}
    training = {f"{NAME}__candidate_model": {"config": SERIAL_TRAINING}}
    job = f"{NAME}_training_job"

    first, second = (run_job(env, job, training) for _ in range(2))
    assert first.success and second.success

    def summary() -> str:
        with DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
            return summarize(instance, uri, NAME, prefixed=True)

    lines = summary().splitlines()
    assert f"production model: {NAME} version 2 (previous: 1)" in lines
    assert (
        f"version 2 serves since its promotion over version 1 (trained by run {second.run_id[:8]})"
        in lines
    )

    rollback = run_job(env, f"{NAME}_rollback_job")
    assert rollback.success
    lines = summary().splitlines()
    assert f"version 1 serves since a rollback from version 2 by run {rollback.run_id[:8]}" in lines
    assert not [line for line in lines if "production kept" in line]  # run 2 is the rollback's

    gates = {f"{NAME}__evaluation_report": {"config": {"min_f1": 0.999}}}
    refused = run_job(env, job, {**training, **gates})
    assert not refused.success

    proc = subprocess.run(
        [sys.executable, "-m", "mlassets.summary"],
        cwd=tmp_path,  # the checkout: its .mlassets/ is the home, as for `make`
        env=bare_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert out.startswith(f"== {NAME}\n") and f"\n== {CHURN}\n" in out, out  # the README's order
    fraud, churn = out.split(f"\n== {CHURN}\n")
    lines = fraud.splitlines()
    assert f"run {refused.run_id[:8]}: FAILURE" in lines
    assert f"production model: {NAME} version 1" in lines  # the registry's, not the last run's
    assert f"version 1 serves since a rollback from version 2 by run {rollback.run_id[:8]}" in lines
    (kept,) = [line for line in lines if line.startswith("production kept")]
    assert kept.startswith(
        f"production kept at version 1: training run {refused.run_id[:8]} ({job}) ended FAILURE "
        f"without promoting: {NAME}/evaluation_report:f1_gate failed (f1 = "
    ), kept
    assert f"MLflow: {uri}" in lines
    assert churn.splitlines()[:2] == [
        f"no training run of {CHURN} yet",
        f"production model: none registered for {CHURN}",
    ]
