"""`make serve`: MLflow's scoring server answers the spec's raw rows exactly as the Pipeline does.

A real training run registers version 1; `python -m mlassets.serve` (what `make serve` runs) starts
`mlflow models serve` from a shell whose PATH lacks the venv, and the test posts raw rows as JSON
and CSV, asks for probabilities, sends bad bodies and bad values, and checks the server goes on.
"""

import json
import os
import sys
import urllib.error
import urllib.request

import numpy as np
import pandas as pd
import pytest

from mlassets_tests.services import free_port, log_tail, running, wait_http

pytestmark = pytest.mark.e2e


def post(url: str, body: str | bytes, content_type: str) -> tuple[int, str]:
    data = body.encode() if isinstance(body, str) else body
    request = urllib.request.Request(url, data=data, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def split_json(rows: pd.DataFrame, params: dict | None = None) -> str:
    """A `dataframe_split` request of `rows` as a consumer writes it (ISO dates, null for NaN)."""
    payload = {"dataframe_split": json.loads(rows.to_json(orient="split", date_format="iso"))}
    payload["dataframe_split"].pop("index")
    if params:
        payload["params"] = params
    return json.dumps(payload)


def test_make_serve_answers_raw_rows_like_the_pipeline(trained_env, tmp_path):
    from mlassets.ml.evaluation import positive_scores
    from mlassets.ml.features import input_frame
    from mlassets.ml.registry import PRODUCTION, alias_version, load_verified_model
    from mlassets.synthetic import fraud_batch

    world = trained_env
    spec = world.resources()["dataset"].spec()
    client = world.client()
    version = alias_version(client, spec.name, PRODUCTION)
    model = load_verified_model(client, spec.name, version)

    # a landed batch as it is: raw columns, id and label included, a few values missing
    rows = fraud_batch(40, seed=23, drift="covariate").reset_index(drop=True)
    rows.loc[3, "feature_2"] = np.nan
    rows.loc[5, "category"] = None
    expected = model.predict(input_frame(rows, spec)).tolist()
    probability = positive_scores(model, input_frame(rows, spec))
    assert 0 < sum(expected) < len(expected)  # both classes: a constant answer cannot pass

    port = free_port()
    env = {
        "PATH": "/usr/bin:/bin",  # no venv: `uvicorn` must come from the venv all the same
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "MLFLOW_TRACKING_URI": world.tracking_uri,
        "MLASSETS_SPEC": str(world.spec_path),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false",
    }
    log = tmp_path / "serve.log"
    command = [sys.executable, "-m", "mlassets.serve", "--port", str(port)]
    with running(command, log, env=env, cwd=tmp_path) as server:
        wait_http(server, f"http://127.0.0.1:{port}/ping", log, timeout=180)
        url = f"http://127.0.0.1:{port}/invocations"
        json_type, csv_type = "application/json", "text/csv"

        status, body = post(url, split_json(rows), json_type)
        assert status == 200, body
        assert json.loads(body)["predictions"] == expected

        status, body = post(url, rows.to_csv(index=False), csv_type)
        assert status == 200, body
        assert json.loads(body)["predictions"] == expected

        status, body = post(url, split_json(rows, {"output": "probability"}), json_type)
        assert status == 200, body
        np.testing.assert_allclose(json.loads(body)["predictions"], probability, rtol=1e-9)

        status, body = post(url, split_json(rows.head(3), {"output": "both"}), json_type)
        assert status == 200, body
        both = json.loads(body)["predictions"]
        assert [r["prediction"] for r in both] == expected[:3]

        # bad requests: each a 4xx that says what is wrong, and the server goes on
        bad_type = rows.head(2).astype({"feature_1": object})
        bad_type.loc[1, "feature_1"] = "lots"
        bad_date = rows.head(2).copy()
        bad_date["timestamp"] = bad_date["timestamp"].astype(str)
        bad_date.loc[0, "timestamp"] = "yesterday"
        cases = {
            "malformed JSON": ('{"dataframe_split": {"columns": ["feature_1"', json_type, "JSON"),
            "no rows key": (json.dumps({"rows": []}), json_type, "dataframe_split"),
            "a wrong type": (split_json(bad_type), json_type, "feature_1"),
            # MLflow parses CSV with pandas, whose message quotes the value but not the column
            "a wrong type in CSV": (bad_type.to_csv(index=False), csv_type, "'lots'"),
            "a date that is none": (split_json(bad_date), json_type, "timestamp"),
            "a missing column": (
                split_json(rows.drop(columns="signup_date")),
                json_type,
                "signup_date",
            ),
            "an unknown output": (
                split_json(rows.head(1), {"output": "odds"}),
                json_type,
                "output",
            ),
        }
        for case, (request, content_type, named) in cases.items():
            status, body = post(url, request, content_type)
            assert 400 <= status < 500, (case, status, body[:500])
            message = json.loads(body)["message"]
            assert named in message, (case, message[:1000])
            status, body = post(url, split_json(rows.head(4)), json_type)
            assert status == 200 and json.loads(body)["predictions"] == expected[:4], (case, body)
    assert server.returncode is not None, log_tail(log)
