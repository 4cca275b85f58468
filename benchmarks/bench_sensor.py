"""Benchmark: one `drift_sensor` tick on 1,000,000 recent rows (10 landed batches of 100,000).

A real Dagster instance and MLflow SQLite registry in a temp folder; a production model trained
by `training_job` (fixed 100-tree forest on 20,000 rows); then ticks of the real sensor through
`build_sensor_context`, each one seeing every batch as new (no cursor). A tick lists and hashes
the batches, reads them, builds features, runs the drift decision (with degradation: the batches
are labelled) and returns its request. Prints a markdown table: cold tick (reference and model
not cached in the process, as on the daemon's first tick after a promotion) and warm tick,
median of `--runs`, and the peak memory a warm tick allocates (tracemalloc).

Usage: .venv/bin/python benchmarks/bench_sensor.py [--runs 3] [--drift covariate]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


def _world(root: Path, instance, drift: str):
    """The trained world: (the resources a tick gets, the code location's drift_sensor)."""
    from mlassets.definitions import build_defs
    from mlassets.resources import (
        DatasetResource,
        MlflowTracking,
        ModelRegistry,
        MonitoringResource,
    )
    from mlassets.spec import DEFAULT_SPEC
    from mlassets.synthetic import BATCH_FIRST_ID, fraud_batch, fraud_frame, write_frame

    data_root = root / "data_root"
    write_frame(fraud_frame(20_000, seed=7), data_root / "data" / "transactions.parquet")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    sensor_resources = {
        "dataset": DatasetResource(spec_path=str(DEFAULT_SPEC), data_root=str(data_root)),
        "registry": ModelRegistry(tracking_uri=uri),
        "monitoring": MonitoringResource(),
    }
    mlflow = MlflowTracking(tracking_uri=uri, artifact_location=str(root / "mlartifacts"))
    defs = build_defs({**sensor_resources, "mlflow": mlflow})
    config = {
        "ops": {
            "candidate_model": {
                "config": {"strategy": "fixed", "params": {"n_estimators": 100}, "n_jobs": 2}
            }
        }
    }
    result = defs.resolve_job_def("training_job").execute_in_process(
        run_config=config, instance=instance
    )
    assert result.success
    for i in range(10):
        df = fraud_batch(100_000, 100 + i, drift, first_id=BATCH_FIRST_ID + i * 100_000)
        write_frame(df, data_root / "data" / "landing" / f"batch_{i + 1:04d}.parquet")
    # one spec file: one model under unprefixed names
    return sensor_resources, defs.get_sensor_def("drift_sensor")


def _tick(instance, resources, sensor):
    from dagster import build_sensor_context

    context = build_sensor_context(instance=instance, cursor=None, resources=resources)
    return sensor(context)


def main(argv: list[str] | None = None) -> None:
    """Print the tick table."""
    from dagster import instance_for_test

    from mlassets.ml import monitoring

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--drift", default="covariate", choices=["none", "covariate", "concept"])
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp, instance_for_test(temp_dir=tmp) as instance:
        resources, sensor = _world(Path(tmp), instance, args.drift)
        cold, warm = [], []
        for _ in range(args.runs):
            monitoring._REFERENCES.clear()  # cold: reference and model read from MLflow again
            monitoring._MODELS.clear()
            t = time.perf_counter()
            result = _tick(instance, resources, sensor)
            cold.append(time.perf_counter() - t)
            t = time.perf_counter()
            _tick(instance, resources, sensor)
            warm.append(time.perf_counter() - t)
        tracemalloc.start()
        _tick(instance, resources, sensor)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    decision = (
        f"run request ({result.run_requests[0].tags['mlassets/drifted_features']})"
        if result.run_requests
        else f"skip: {result.skip_reason.skip_message[:60]}"
    )
    print(
        f"drift_sensor tick, 1,000,000 recent rows ({args.drift} drift), {os.cpu_count()} cores\n"
    )
    print("| tick | median s | runs |")
    print("|---|---:|---:|")
    print(
        f"| cold (reference + model loaded from MLflow) | {statistics.median(cold):.2f} | {args.runs} |"
    )
    print(f"| warm (cached per production version) | {statistics.median(warm):.2f} | {args.runs} |")
    print(f"\npeak memory allocated by a warm tick: {peak / 2**20:.0f} MiB; decision: {decision}")


if __name__ == "__main__":
    main()
