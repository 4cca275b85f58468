"""One Dagster home, two specs: the values of one can never be read by a run of the other.

Before the value store was keyed by the model's name, a churn run in the fraud home overwrote
`raw_data` and a fraud `--select features` failed on churn's columns (`KeyError: 'timestamp'`).
"""

from dataclasses import replace

import pytest
from dagster import AssetKey

from mlassets_tests.conftest import make_env
from mlassets_tests.test_cli import CHURN_SPEC, churn_frame

pytestmark = pytest.mark.integration

CHURN_TRAINING = {
    "strategy": "grid",
    "param_grid": {"n_estimators": [30], "max_depth": [8]},
    "cv_folds": 3,
    "n_jobs": 2,
}


def test_two_specs_in_one_home_keep_their_own_values(tmp_path, dagster_instance):
    fraud = make_env(tmp_path, dagster_instance)
    churn_dir = tmp_path / "churn"
    churn_dir.mkdir()
    (churn_dir / "spec.yaml").write_text(CHURN_SPEC)
    churn_frame().to_csv(churn_dir / "customers.csv", index=False)
    # the same home, instance, MLflow store and storage root; another spec
    churn = replace(fraud, spec_path=churn_dir / "spec.yaml", data_root=churn_dir)

    assert fraud.run().success
    churn_run = churn.run(config={"ops": {"candidate_model": {"config": CHURN_TRAINING}}})
    assert churn_run.success

    # the newest raw_data in the instance is churn's; a fraud run of `features` alone still
    # reads fraud's raw_data, from fraud's own folder
    job = fraud.defs().resolve_implicit_global_asset_job_def()
    partial = job.execute_in_process(
        instance=fraud.instance, asset_selection=[AssetKey("features")], raise_on_error=False
    )
    assert partial.success
    features = partial.output_for_node("features")
    assert "purchase_frequency" in features.frame and "customer_age" not in features.frame
    assert features.provenance["spec"] == "fraud_detection"

    storage = tmp_path / "storage"
    assert sorted(p.name for p in storage.iterdir()) == ["churn_model", "fraud_detection"]
    for name in ("churn_model", "fraud_detection"):
        assert (storage / name / "raw_data" / "LATEST").is_file()

    client = fraud.client()
    for name in ("fraud_detection", "churn_model"):
        mv = client.get_model_version_by_alias(name, "production")
        assert mv.tags["mlassets.status"] == "registered"
        assert mv.tags["spec_digest"]
