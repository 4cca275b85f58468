"""The synthetic data generator: deterministic bytes, a fraud rate in range, a working command."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import mlassets.settings  # noqa: F401
from mlassets.spec import DEFAULT_SPEC, load_spec
from mlassets.synthetic import CATEGORIES, fraud_frame, write_frame

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_the_same_seed_writes_the_same_bytes(tmp_path, suffix):
    a = write_frame(fraud_frame(500, seed=11), tmp_path / f"a{suffix}")
    b = write_frame(fraud_frame(500, seed=11), tmp_path / f"b{suffix}")
    c = write_frame(fraud_frame(500, seed=12), tmp_path / f"c{suffix}")
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_write_frame_creates_folders_and_rejects_other_suffixes(tmp_path):
    df = fraud_frame(10, seed=1)
    out = write_frame(df, tmp_path / "deep" / "er" / "t.pq")
    assert out.exists()
    pd.testing.assert_frame_equal(pd.read_parquet(out), df)
    with pytest.raises(ValueError, match=r"\.json"):
        write_frame(df, tmp_path / "t.json")
    assert not (tmp_path / "t.json").exists()


@pytest.mark.parametrize("seed", [1, 42, 2024])
def test_positive_rate_is_between_3_and_8_percent(seed):
    rate = fraud_frame(20_000, seed=seed)["label"].mean()
    assert 0.03 <= rate <= 0.08


def test_frame_matches_the_bundled_spec():
    spec = load_spec(DEFAULT_SPEC)
    df = fraud_frame(3000, seed=5, first_id=100)
    assert list(df.columns) == list(spec.columns)
    assert df["user_id"].tolist() == list(range(100, 3100))
    assert df["feature_1"].between(0, 100).all()
    assert (df["feature_2"] >= 0).all() and (df["total_purchases"] >= 0).all()
    assert set(df["category"]) <= set(CATEGORIES)
    assert set(df["label"]) == {0, 1}
    assert (df["signup_date"] <= df["timestamp"]).all()
    assert pd.api.types.is_datetime64_any_dtype(df["timestamp"])
    assert df.notna().all().all()


def test_cli_writes_the_same_table_as_the_function(tmp_path):
    out = tmp_path / "out" / "t.parquet"
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "GX_ANALYTICS_ENABLED": "false"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlassets.synthetic",
            "--rows",
            "300",
            "--seed",
            "9",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "wrote 300 rows" in proc.stdout and str(out) in proc.stdout
    expected = write_frame(fraud_frame(300, seed=9), tmp_path / "expected.parquet")
    assert out.read_bytes() == expected.read_bytes()


def test_cli_rejects_an_unsupported_suffix(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlassets.synthetic",
            "--rows",
            "5",
            "--out",
            str(tmp_path / "t.txt"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "unsupported suffix" in proc.stderr
    assert not (tmp_path / "t.txt").exists()
