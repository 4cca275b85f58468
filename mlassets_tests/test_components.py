"""Each model a Dagster Component (`mlassets.TabularModel`), through `dg` itself: scaffolded,
listed and checked, two models with their own settings beside broken ones, and one trained and
promoted by `dg launch` from a project that is not this one."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from mlassets.spec import DEFAULT_SPEC, load_spec
from mlassets_tests.conftest import FAST_TRAINING, TEST_ROWS

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = """
[project]
name = "{module}"
version = "0"

[tool.dg]
directory_type = "project"

[tool.dg.project]
root_module = "{module}"
code_location_target_module = "{module}.definitions"
"""


def project(root: Path, module: str = "team_models") -> Path:
    """A dg project of the user's own, beside this checkout: its models are components."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text(PYPROJECT.format(module=module))
    (root / module / "defs").mkdir(parents=True)
    (root / module / "__init__.py").write_text("")
    (root / module / "defs" / "__init__.py").write_text("")
    (root / module / "definitions.py").write_text(
        "from mlassets.definitions import build_defs\n\n"
        f'defs = build_defs(defs_module="{module}.defs")\n'
    )
    return root


def component(root: Path, folder: str, spec: str, **attributes) -> Path:
    """A `TabularModel` folder holding `defs.yaml` and its `spec.yaml`."""
    path = root / "team_models" / "defs" / folder
    path.mkdir(parents=True)
    (path / "spec.yaml").write_text(spec)
    body = {"type": "mlassets.TabularModel", "attributes": {"spec": "./spec.yaml", **attributes}}
    (path / "defs.yaml").write_text(yaml.safe_dump(body))
    return path


def homes(root: Path) -> dict[str, str]:
    """A Dagster and an mlassets home of the project's own, beside it."""
    (root.parent / "dagster_home").mkdir(exist_ok=True)
    return {
        "DAGSTER_HOME": str(root.parent / "dagster_home"),
        "MLASSETS_HOME": str(root.parent / "mlassets_home"),
    }


def dg(root: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, **homes(root), **(env or {}), "VIRTUAL_ENV": str(BIN.parent)}
    for name in ("MLASSETS_SPEC", "MLASSETS_SPECS"):
        environment.pop(name, None)
    # the user's project is importable from its own folder, as `uv run`/`pip -e` would make it
    environment["PYTHONPATH"] = str(root)
    return subprocess.run(
        [str(BIN / "dg"), *args],
        cwd=root,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )


def fraud_spec(name: str) -> str:
    """The bundled fraud spec as another model of the same table, its data beside the spec."""
    return DEFAULT_SPEC.read_text().replace("name: fraud_detection", f"name: {name}", 1)


def test_scaffold_writes_a_component_and_a_template_spec_that_load(tmp_path):
    root = project(tmp_path / "proj")
    made = dg(root, "scaffold", "defs", "mlassets.TabularModel", "models/small_model")
    assert made.returncode == 0, made.stderr[-2000:]
    folder = root / "team_models" / "defs" / "models" / "small_model"
    assert yaml.safe_load((folder / "defs.yaml").read_text()) == {
        "type": "mlassets.TabularModel",
        "attributes": {"spec": "./spec.yaml"},
    }
    assert "# monitoring_schedule:" in (folder / "defs.yaml").read_text()
    assert load_spec(folder / "spec.yaml").name == "small_model"
    checked = dg(root, "check", "yaml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    listed = dg(root, "list", "defs", "--json")
    assert listed.returncode == 0, listed.stderr[-2000:]
    keys = {a["asset_key"] for a in json.loads(listed.stdout)["assets"]}
    assert {"small_model/raw_data", "small_model/production_model"} <= keys


def test_two_models_keep_their_own_settings_beside_broken_ones(tmp_path):
    root = project(tmp_path / "proj")
    component(
        root,
        "fraud_a",
        fraud_spec("fraud_a"),
        monitoring_schedule="15 3 * * *",
        sensor_interval_seconds=45,
        drift={"min_rows": 123},
        owners=["team:risk"],
        tags={"domain": "payments"},
    )
    component(root, "fraud_b", fraud_spec("fraud_b"), key_prefix="fb")
    component(root, "broken_spec", fraud_spec("broken").replace("label:", "lable:", 1))
    component(root, "bad_attribute", fraud_spec("bad"), drift={"min_rowz": 5})

    checked = dg(root, "check", "defs")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    listed = dg(root, "list", "defs", "--json")
    assert listed.returncode == 0, listed.stderr[-2000:]
    found = json.loads(listed.stdout)
    crons = {s["name"]: s["cron_schedule"] for s in found["schedules"]}
    assert crons == {"fraud_a_daily_monitoring": "15 3 * * *", "fb_daily_monitoring": "0 6 * * *"}
    assets = {a["asset_key"]: a for a in found["assets"]}
    assert assets["fraud_a/raw_data"]["owners"] == [{"team": "risk"}]
    assert "fb/raw_data" in assets and not any(k.startswith("fraud_b/") for k in assets)
    # each broken model is its own failing asset, named by its folder, with the reason
    assert {"broken_spec/dataset_spec", "bad_attribute/dataset_spec"} <= set(assets)
    assert "lable" in assets["broken_spec/dataset_spec"]["description"]
    assert "min_rowz" in assets["bad_attribute/dataset_spec"]["description"]

    # the sensor interval and drift thresholds are the model's own (read in the project's process)
    probe = (
        "from team_models.definitions import defs\n"
        "from mlassets.catalog import Model\n"
        "from mlassets.resources import MonitoringResource\n"
        "job = defs.resolve_job_def('{job}')\n"
        "m = Model.from_tags(job.graph.node_named('{op}').definition.tags)\n"
        "print(defs.resolve_sensor_def('{sensor}').minimum_interval_seconds,"
        " MonitoringResource().drift_for(m).min_rows)\n"
    )
    quiet = {k: v for k, v in os.environ.items() if k != "MLASSETS_SENSOR_INTERVAL"}
    default_rows = __import__("mlassets.config", fromlist=["DriftConfig"]).DriftConfig().min_rows
    for job, op, sensor, expected in (
        ("fraud_a_training_job", "fraud_a__raw_data", "fraud_a_drift_sensor", "45 123"),
        ("fb_training_job", "fb__raw_data", "fb_drift_sensor", f"60 {default_rows}"),
    ):
        out = subprocess.run(
            [sys.executable, "-c", probe.format(job=job, op=op, sensor=sensor)],
            cwd=root,
            env={**quiet, **homes(root), "PYTHONPATH": str(root)},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.split()[-2:] == expected.split(), (job, out.stdout)


def test_a_component_model_of_another_project_trains_and_promotes_through_dg_launch(tmp_path):
    from mlassets.synthetic import fraud_frame, write_frame

    root = project(tmp_path / "proj")
    spec = fraud_spec("fraud_c").replace(
        "source: data/transactions.parquet", "source: transactions.parquet", 1
    )
    folder = component(root, "fraud_c", spec)
    write_frame(fraud_frame(TEST_ROWS, seed=7), folder / "transactions.parquet")
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    shutil.copy(ROOT / "deploy" / "local" / "dagster.yaml", home / "dagster.yaml")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {
        "DAGSTER_HOME": str(home),
        "MLASSETS_HOME": str(tmp_path / "mlassets_home"),
        "MLFLOW_TRACKING_URI": uri,
    }
    config = tmp_path / "run.yaml"
    ops = {"fraud_c__candidate_model": {"config": FAST_TRAINING}}
    config.write_text(yaml.safe_dump({"ops": ops}))
    launched = dg(root, "launch", "--job", "fraud_c_training_job", "--config", str(config), env=env)
    assert launched.returncode == 0, (launched.stdout + launched.stderr)[-4000:]
    client = MlflowClient(uri, uri)
    assert str(client.get_model_version_by_alias("fraud_c", "production").version) == "1"
    # its values live under its own key prefix in the home's value store
    assert (tmp_path / "mlassets_home" / "storage" / "fraud_c").is_dir()
