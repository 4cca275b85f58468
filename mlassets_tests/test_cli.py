"""The real `dagster` CLI on the code location, as a user runs it."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from mlassets.spec import DEFAULT_SPEC

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
    from dagster._config import process_config

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
    result = process_config(job.run_config_schema.config_type, config)
    assert result.success, result.errors
    report = f"{prefix}evaluation_report" if folder else "evaluation_report"
    assert config["ops"][report]["config"]["min_f1"] != 0.80
