"""Asset values and MLflow artifacts on an object store, chosen by the environment alone.

`MLASSETS_STORAGE=s3://...` puts every asset value (Parquet, skops, JSON, the `LATEST` pointers)
in a bucket; `MLASSETS_ARTIFACT_ROOT=s3://...` with a database tracking store makes the MLflow
client write artifacts there itself. The S3 API is a real `moto_server` on 127.0.0.1; s3fs and
botocore find it through `AWS_ENDPOINT_URL_S3`, MLflow through `MLFLOW_S3_ENDPOINT_URL`.
"""

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mlassets_tests.conftest import NAME, make_env, run_config
from mlassets_tests.services import HOST, free_port, running, wait_http
from mlassets_tests.test_mlflow_server import fresh_s3fs, s3_client, s3_keys

pytestmark = [pytest.mark.e2e, pytest.mark.services]

MOTO = str(Path(sys.executable).parent / "moto_server")
BUCKET = "mlassets-values"


@dataclass
class S3:
    endpoint: str

    def keys(self, prefix: str = "") -> list[str]:
        return s3_keys(self.endpoint, BUCKET, prefix)

    def text(self, key: str) -> str:
        body = s3_client(self.endpoint).get_object(Bucket=BUCKET, Key=key)["Body"]
        return body.read().decode()


@pytest.fixture(scope="module")
def s3(tmp_path_factory) -> Iterator[S3]:
    """One moto_server for the module, with the bucket the tests write to."""
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with running([MOTO, "-H", HOST, "-p", str(port)], log) as proc:
        endpoint = f"http://{HOST}:{port}"
        wait_http(proc, f"{endpoint}/moto-api/", log, timeout=60)
        s3_client(endpoint).create_bucket(Bucket=BUCKET)
        yield S3(endpoint)


def test_values_and_artifacts_on_s3_by_configuration(
    s3: S3, tmp_path, dagster_instance, monkeypatch
):
    from dagster import AssetKey
    from mlflow import MlflowClient

    from mlassets.definitions import build_defs
    from mlassets.ml.registry import PRODUCTION
    from mlassets.resources import default_resources
    from mlassets.spec import load_spec

    world = make_env(tmp_path, dagster_instance)
    for key in ("MLFLOW_REGISTRY_URI", "MLASSETS_SPEC", "AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    settings = {
        "MLASSETS_HOME": str(world.data_root),
        "MLFLOW_TRACKING_URI": world.tracking_uri,  # SQLite: the client writes artifacts itself
        "MLASSETS_STORAGE": f"s3://{BUCKET}/values",
        "MLASSETS_ARTIFACT_ROOT": f"s3://{BUCKET}/mlartifacts",
        "AWS_ACCESS_KEY_ID": "moto",
        "AWS_SECRET_ACCESS_KEY": "moto",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": s3.endpoint,
        "MLFLOW_S3_ENDPOINT_URL": s3.endpoint,
    }
    for key, value in settings.items():
        monkeypatch.setenv(key, value)
    resources = default_resources(load_spec())
    assert resources["io_manager"].base_path == f"s3://{BUCKET}/values/{NAME}"
    defs = build_defs(resources)

    with fresh_s3fs():
        first = defs.resolve_job_def("training_job").execute_in_process(
            run_config=run_config(), instance=dagster_instance, raise_on_error=False
        )
        assert first.success, [
            str(e.step_failure_data.error) for e in first.get_step_failure_events()
        ]

        # every value of the run is an object under <storage>/<model>/<asset>/<run id>/
        prefix = f"values/{NAME}/"
        keys = set(s3.keys(prefix))
        run = first.run_id
        for asset, files in {
            "raw_data": ["value.parquet"],
            "train_set": ["value.parquet"],
            "candidate_model": ["model.skops", "provenance.json"],
            "evaluation_report": ["value.json"],
        }.items():
            for name in files:
                assert f"{prefix}{asset}/{run}/{name}" in keys, (asset, name, sorted(keys))
            assert s3.text(f"{prefix}{asset}/LATEST") == run
        assert not [k for k in keys if ".partial" in k or ".tmp" in k], sorted(keys)

        # the experiment keeps the s3:// URL as given (not a file:// path named after it) and
        # the registered model's files are objects there
        client = MlflowClient(world.tracking_uri, world.tracking_uri)
        experiment = client.get_experiment_by_name(NAME)
        assert experiment.artifact_location == f"s3://{BUCKET}/mlartifacts"
        production = client.get_model_version_by_alias(NAME, PRODUCTION)
        artifacts = s3.keys("mlartifacts/")
        model_id = production.source.removeprefix("models:/")
        assert [k for k in artifacts if k.endswith(f"{model_id}/artifacts/model.skops")], artifacts
        assert [
            k
            for k in artifacts
            if k.endswith(f"{production.run_id}/artifacts/reference/sample.parquet")
        ], artifacts

        # a downstream-only run reads its upstream values from S3 through LATEST
        partial = defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=dagster_instance,
            asset_selection=[AssetKey("evaluation_report")],
            raise_on_error=False,
        )
        assert partial.success, [
            str(e.step_failure_data.error) for e in partial.get_step_failure_events()
        ]
    logs = "\n".join(e.user_message for e in dagster_instance.all_logs(partial.run_id))
    for upstream in ("candidate_model", "test_set"):
        assert f"loading {upstream} written by run {run} (chosen by the LATEST pointer" in logs
        assert f"s3://{BUCKET}/{prefix}{upstream}/{run}" in logs
    report = partial.output_for_node("evaluation_report")
    assert report.metrics == first.output_for_node("evaluation_report").metrics
    assert s3.text(f"{prefix}evaluation_report/LATEST") == partial.run_id
    written = set(s3.keys(prefix)) - keys
    assert written == {f"{prefix}evaluation_report/{partial.run_id}/value.json"}

    # nothing of it on the local disk
    for local in ("storage", "mlartifacts", "mlruns"):
        assert not (world.data_root / local).exists(), local
        assert not (tmp_path / local).exists(), local
