"""The evaluation report in the graph: tuned threshold, champion/challenger, fairness, pictures.

Real Dagster instance, real MLflow SQLite registry, small data and the one-point search.
"""

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlassets_tests.conftest import FAST_TRAINING, Env, run_config, trained_world
from mlassets_tests.html_page import read_page

pytestmark = pytest.mark.integration

PNG = b"\x89PNG\r\n\x1a\n"
PICTURES = {
    "roc_curve",
    "pr_curve",
    "confusion_matrices",
    "reliability_curve",
    "permutation_importance",
    "fairness_category",
    "candidate_vs_production",
}
NO_METRIC_GATES = {"min_accuracy": None, "min_f1": None}


def checks(result) -> dict:
    return {c.check_name: c for c in result.get_asset_check_evaluations()}


def materialized(result) -> set[str]:
    return {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}


def metadata(result, asset: str) -> dict:
    (event,) = [
        e
        for e in result.get_asset_materialization_events()
        if e.asset_key.to_user_string() == asset
    ]
    return {k: v.value for k, v in event.materialization.metadata.items()}


@pytest.fixture(scope="module")
def fraud_world(tmp_path_factory):
    """The bundled fraud spec on the default test data, trained once: (world, first run)."""
    with trained_world(tmp_path_factory.mktemp("evaluation")) as (world, result):
        yield world, result


def test_the_tuned_threshold_is_the_one_the_registered_model_predicts_with(fraud_world):
    import mlflow
    from sklearn.model_selection import FixedThresholdClassifier

    from mlassets.ml.features import input_frame
    from mlassets.ml.threshold import base_model

    world, result = fraud_world
    candidate = result.output_for_node("candidate_model").model
    assert isinstance(candidate, FixedThresholdClassifier)
    t = candidate.threshold
    assert 0 < t < 1 and t != 0.5  # tuned away from the default on this data
    meta = metadata(result, "candidate_model")
    assert meta["decision_threshold"] == t
    assert "within one standard error" in meta["threshold_choice"]
    assert "data:image/png;base64," in meta["threshold_plot"]

    report = result.output_for_node("evaluation_report")
    assert report.threshold.model_dump() == {"value": t, "default": 0.5}
    rows = {r["name"]: r for r in report.by_threshold}
    assert rows["default"]["threshold"] == 0.5 and rows["tuned"]["threshold"] == t
    assert report.metrics["f1"] == pytest.approx(rows["tuned"]["f1"])  # gates judge the tuned

    client = world.client()
    mv = client.get_model_version_by_alias("fraud_detection", "production")
    run = client.get_run(mv.run_id)
    assert float(run.data.params["decision_threshold"]) == t
    assert run.data.params["threshold_metric"] == "f1"
    validation = run.data.metrics
    assert (
        validation["validation_f1_at_tuned_threshold"]
        >= validation["validation_f1_at_default_threshold"]
    )

    spec = world.resources()["dataset"].spec()
    X = pd.concat(
        [
            input_frame(result.output_for_node("splits", s).frame, spec)
            for s in ("validation_set", "test_set")
        ]
    )
    score = base_model(candidate).predict_proba(X)[:, 1]
    mlflow.set_tracking_uri(world.tracking_uri)
    mlflow.set_registry_uri(world.tracking_uri)
    # the serving path, as a consumer runs it: mlassets' own loader verifies and loads the skops
    # file, so MLflow's deserialization switch stays off
    assert os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] == "false"
    served = mlflow.pyfunc.load_model("models:/fraud_detection@production")
    # no input schema for MLflow to enforce: the raw columns (no derived feature), their spec
    # types written beside, and the model takes them as pandas holds them
    assert served.metadata.get_input_schema() is None
    assert sorted(served.metadata.metadata["input_types"]) == sorted(spec.model_inputs)
    # the rows with pandas' own types (datetime64), id and label included: ignored
    raw = pd.concat(
        [result.output_for_node("splits", s).frame for s in ("validation_set", "test_set")]
    )
    rows = X.assign(user_id=raw["user_id"], label=raw["label"])
    got = np.asarray(served.predict(rows)).ravel()
    np.testing.assert_array_equal(got, (score >= t).astype(int))
    assert (got != (score >= 0.5).astype(int)).any()  # rows between t and 0.5 (validation)
    probability = served.predict(rows, params={"output": "probability"})
    np.testing.assert_allclose(probability, score)
    both = served.predict(rows.head(50), params={"output": "both"})
    assert list(both.columns) == ["prediction", "probability"]
    np.testing.assert_array_equal(both["prediction"], got[:50])
    assert served.get_raw_model().threshold == t

    # the calibration fit on the validation rows travels with the version: in the model's
    # folder (served) and in its drift reference (monitoring), the same numbers
    from mlassets.ml.estimation import Calibration
    from mlassets.ml.estimation import probability as calibrated
    from mlassets.ml.registry import load_reference

    record = result.output_for_node("candidate_model").provenance["calibration"]
    assert record["method"] == "temperature" and record["rows"] == len(
        result.output_for_node("splits", "validation_set")
    )
    p = served.predict(rows, params={"output": "calibrated_probability"})
    np.testing.assert_allclose(p, calibrated(candidate, Calibration.from_dict(record), X))
    _, _, baseline = load_reference(client, "fraud_detection", tracking_uri=world.tracking_uri)
    assert baseline["estimation"]["calibration"] == record
    assert baseline["estimation"]["test"] == report.estimation.model_dump()


def test_report_pictures_and_artifacts_sit_behind_the_model_version(fraud_world, tmp_path):
    import mlflow

    world, result = fraud_world
    report = result.output_for_node("evaluation_report")
    client = world.client()
    mv = client.get_model_version("fraud_detection", "1")
    assert mv.run_id == report.mlflow_run_id

    # the verdicts: nothing to beat yet, and the default fairness gate passes on the default data
    verdicts = checks(result)
    assert verdicts["beats_production"].passed
    assert "no production model" in verdicts["beats_production"].description
    assert verdicts["fairness"].passed, verdicts["fairness"].description
    (column,) = report.fairness.columns
    assert column.column == "category"
    assert {g["group"] for g in column.groups} == {"electronics", "grocery", "travel", "fashion"}
    assert set(column.groups[0]) >= {"count", "selection_rate", "tpr", "fpr", "precision"}
    assert column.demographic_parity_difference < 0.1
    assert 0 < report.calibration.brier < 0.1
    top = report.importance.top_k
    assert top[0]["feature"] == "feature_1"

    # pictures in the Dagster metadata
    meta = metadata(result, "evaluation_report")
    for key in ("roc_curve", "pr_curve", "confusion_matrices", "reliability_curve"):
        assert meta[key].startswith("![") and "data:image/png;base64," in meta[key]
    assert "data:image/png;base64," in meta["group_rates"]
    assert meta["decision_threshold"] == report.threshold.value
    # the test rows' F1 estimated from calibrated probabilities, beside the realized one
    estimated = report.estimation.metrics["f1"]
    assert meta["estimated_f1"] == round(estimated.estimate, 4)
    assert abs(estimated.estimate - report.metrics["f1"]) < 0.1
    assert report.estimation.rows == report.rows

    # the same pictures, the JSON and the HTML on the MLflow run of the model version
    run = client.get_run(mv.run_id)
    assert run.data.metrics["test_f1"] == pytest.approx(report.metrics["f1"])
    assert "test_f1_at_default_threshold" in run.data.metrics
    assert "test_brier" in run.data.metrics
    assert run.data.metrics["test_estimated_f1"] == pytest.approx(estimated.estimate)
    assert run.data.params["calibration"] == "temperature"
    assert "fairness_category_equalized_odds_difference" in run.data.metrics
    names = {a.path for a in client.list_artifacts(mv.run_id, "evaluation")}
    assert names == {f"evaluation/{p}.png" for p in PICTURES}
    local = Path(
        mlflow.artifacts.download_artifacts(
            run_id=mv.run_id, dst_path=str(tmp_path), tracking_uri=world.tracking_uri
        )
    )
    for picture in PICTURES:
        assert (local / "evaluation" / f"{picture}.png").read_bytes().startswith(PNG)
    stored = json.loads((local / "evaluation_report.json").read_text())
    assert stored["mlassets.record"] == "evaluation" and stored["schema_version"] == 1
    assert stored["metrics"] == pytest.approx(report.metrics)
    assert stored["fairness"]["passed"] is True

    page = read_page((local / "evaluation.html").read_text())
    assert page.open_tags == [] and page.external == []
    assert len(page.images) == len(PICTURES)
    assert all(src.startswith("data:image/png;base64,") for src in page.images)
    assert "Champion / challenger" in page.text and "Fairness: category" in page.text


def test_a_crippled_challenger_fails_beats_production_and_production_stays(fraud_world):
    world, _ = fraud_world
    client = world.client()
    before = client.get_model_version_by_alias("fraud_detection", "production").version
    versions = {mv.version for mv in client.search_model_versions("name='fraud_detection'")}
    crippled = {  # one depth-1 tree on one random column, at the default threshold
        "strategy": "fixed",
        "params": {"n_estimators": 1, "max_depth": 1, "max_features": 1},
        "tune_threshold": False,
    }

    # beats_production alone under test: the trivial baseline's gate (which this model fails
    # too, F1 0 against every row positive's 0.09) is lowered out of the way
    result = world.run(config=run_config(training=crippled, gates={"min_lift": -1.0}))

    # a challenger that is worse is a normal outcome: production is kept, the run ends well
    assert result.success
    outcome = world.instance.get_run_by_id(result.run_id).tags["mlassets/outcome"]
    assert outcome.startswith(f"kept version {before}: the challenger did not beat it (f1 ")
    verdicts = checks(result)
    gate = verdicts["beats_production"]
    assert not gate.passed and gate.severity.value == "WARN"
    meta = {k: v.value for k, v in gate.metadata.items()}
    assert meta["production_version"] == str(before)
    assert meta["difference"] < -0.3
    assert "FAILS" in gate.description and "f1" in gate.description
    assert all(c.passed for n, c in verdicts.items() if n != "beats_production")
    assert not materialized(result) & {"registered_model", "staging_model", "production_model"}
    assert client.get_model_version_by_alias("fraud_detection", "production").version == before
    assert {mv.version for mv in client.search_model_versions("name='fraud_detection'")} == (
        versions
    )
    # both sets of figures are in the report and on the run
    report = result.output_for_node("evaluation_report")
    cc = report.champion_challenger
    assert cc.production.metrics["f1"] > report.metrics["f1"] + 0.3
    interval = cc.interval
    assert interval.low <= interval.mean <= interval.high < 0
    run = client.get_run(report.mlflow_run_id)
    assert run.data.metrics["production_test_f1"] == pytest.approx(cc.production.metrics["f1"])


# --- fairness on generated data ---------------------------------------------------------------

PROBE_SPEC = """
name: fairness_probe
source: probe.csv
label: {column: label, positive: 1}
id: row_id
sensitive: [group]
min_rows: 500
columns:
  row_id: {type: integer, nullable: false, unique: true}
  x1: {type: float}
  x2: {type: float}
  noise: {type: float}
  group: {type: category, values: [A, B, C]}
  label: {type: integer, nullable: false, values: [0, 1]}
features:
  numeric: [x1, x2, noise]
"""


def probe_frame(rows: int, disadvantaged: str | None, seed: int = 5) -> pd.DataFrame:
    """Labels follow x1 and x2 in every group; in `disadvantaged` they are coin flips at the same
    rate, so a model that learns the rule misses most of that group's positives. `noise` is a
    pure-noise column, and `group` is not a model input.
    """
    rng = np.random.default_rng(seed)
    x1, x2 = rng.uniform(0, 1, rows), rng.normal(0, 1, rows)
    group = np.array(["A", "B", "C"])[np.arange(rows) % 3]
    label = (x1 + 0.1 * x2 > 0.7).astype(int)
    if disadvantaged:
        hit = group == disadvantaged
        label[hit] = rng.random(hit.sum()) < label.mean()
    return pd.DataFrame(
        {
            "row_id": np.arange(rows),
            "x1": x1.round(4),
            "x2": x2.round(4),
            "noise": rng.normal(0, 1, rows).round(4),
            "group": group,
            "label": label,
        }
    )


def probe_world(root: Path, instance, disadvantaged: str | None) -> Env:
    data_root = root / "probe"
    data_root.mkdir()
    (data_root / "spec.yaml").write_text(PROBE_SPEC)
    probe_frame(3000, disadvantaged).to_csv(data_root / "probe.csv", index=False)
    return Env(
        root=root,
        instance=instance,
        tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
        spec_path=data_root / "spec.yaml",
        data_root=data_root,
    )


def test_fairness_fails_a_disadvantaged_group_and_names_it(tmp_path, dagster_instance):
    world = probe_world(tmp_path, dagster_instance, disadvantaged="C")

    result = world.run(config=run_config(FAST_TRAINING, gates=NO_METRIC_GATES))

    assert not result.success
    gate = checks(result)["fairness"]
    assert not gate.passed
    assert "group: equalized odds difference" in gate.description
    assert "TPR C" in gate.description
    meta = {k: v.value for k, v in gate.metadata.items()}
    assert meta["offending_groups"] == {"group": ["C"]}
    assert meta["value"] > 0.3 and meta["threshold"] == 0.1
    assert checks(result)["beats_production"].passed
    assert "registered_model" not in materialized(result)
    assert world.client().search_model_versions("name='fairness_probe'") == []


def test_fairness_passes_an_unbiased_model_and_importance_ranks_noise_low(
    tmp_path, dagster_instance
):
    world = probe_world(tmp_path, dagster_instance, disadvantaged=None)

    result = world.run(config=run_config(FAST_TRAINING))

    assert result.success, {n: c.description for n, c in checks(result).items() if not c.passed}
    report = result.output_for_node("evaluation_report")
    (column,) = report.fairness.columns
    assert column.equalized_odds_difference <= 0.1
    assert all(g["tpr_gated"] for g in column.groups)  # every group's TPR was judged
    rank = {r["feature"]: r["rank"] for r in report.importance.columns}
    assert rank["x1"] < rank["noise"] and rank["x2"] < rank["noise"]
    assert report.importance.top_k[0]["feature"] == "x1"
    production = world.client().get_model_version_by_alias("fairness_probe", "production")
    assert str(production.version) == "1"
