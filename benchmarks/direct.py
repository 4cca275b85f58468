"""`training_job` without Dagster: the same `mlassets.ml` calls its assets and checks make, in order.

The yardstick for Dagster's overhead (bench_overhead) and the stage clock for scaling
(bench_scaling). Each stage calls the same step function of `mlassets.ml.steps` as the asset
of the same name (reading, the Great Expectations suite, features, split and its check, search,
threshold, MLflow logging, the evaluation report and its gates, registration, the verified
aliases), so the two cannot drift apart; what it leaves out is Dagster's: run and event
storage, IO managers (Parquet and skops on disk and back), asset metadata and logs.

`pipeline(df, spec, ...)` is the lighter path the tuning benchmark times against the seed's
script: validation, features, split, search, threshold, test metrics (no MLflow).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd


def _peak_rss_kib(reset: bool = False) -> int | None:
    """This process's peak RSS so far (VmHWM, Linux); `reset` starts a new peak from now."""
    try:
        if reset:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        with open("/proc/self/status") as f:
            return int(next(line for line in f if line.startswith("VmHWM")).split()[1])
    except (OSError, StopIteration, ValueError):
        return None


class Clock:
    """Seconds per named stage, and each stage's peak RSS (Linux) when `memory` is on."""

    def __init__(self, memory: bool = False) -> None:
        self.times: dict[str, float] = {}
        self.peaks: dict[str, int | None] = {}
        self.memory = memory

    @contextmanager
    def __call__(self, stage: str):
        if self.memory:
            _peak_rss_kib(reset=True)
        t = time.perf_counter()
        try:
            yield
        finally:
            self.times[stage] = self.times.get(stage, 0.0) + time.perf_counter() - t
            if self.memory:
                self.peaks[stage] = _peak_rss_kib()


def pipeline(
    df: pd.DataFrame,
    spec,
    strategy: str = "fast",
    *,
    n_jobs: int = -1,
    seed: int = 42,
    validate: bool = True,
) -> dict[str, Any]:
    """validation (GE) -> features -> split -> search -> threshold -> test metrics, timed.

    What `candidate_model` does with TrainingConfig(strategy=...) and otherwise default
    settings, between the seed script's first and last stage.
    """
    from mlassets.ml.data import target
    from mlassets.ml.evaluation import evaluate
    from mlassets.ml.features import build_features, input_frame
    from mlassets.ml.splitting import split
    from mlassets.ml.threshold import choose_threshold
    from mlassets.ml.training import train_candidate
    from mlassets.ml.validation import validate as ge_validate

    clock = Clock()
    if validate:
        with clock("validation"):
            failed = [o.describe() for o in ge_validate(df, spec) if not o.success]
        if failed:
            raise ValueError(f"data quality failed: {failed}")
    with clock("features"):
        features = build_features(df, spec)
    with clock("split"):
        parts = split(features, target(features, spec), seed=seed)
    with clock("search"):
        result = train_candidate(
            input_frame(parts.train, spec),
            target(parts.train, spec),
            spec,
            strategy=strategy,
            seed=seed,
            n_jobs=n_jobs,
        )
    with clock("threshold"):
        choice = choose_threshold(
            result.model,
            input_frame(parts.validation, spec),
            target(parts.validation, spec),
            seed=seed,
        )
    with clock("evaluation"):
        report = evaluate(choice.model, input_frame(parts.test, spec), target(parts.test, spec))
    return {
        "metrics": report["metrics"],
        "times": clock.times,
        "total": sum(clock.times.values()),
        "best_params": result.best_params,
        "threshold": choice.threshold,
        "test_index": parts.test.index.to_numpy(),
        "model": choice.model,  # for benchmarks that go on from the trained model
        "splits": parts,
    }


def training_job(
    home: Path,
    training: dict[str, Any] | None = None,
    memory: bool = False,
    source: Path | None = None,
) -> dict[str, Any]:
    """Every `mlassets.ml` call of training_job, on the source under `home` (bundled spec).

    `home` is laid out like MLASSETS_HOME (data/transactions.parquet, mlflow.db, mlartifacts;
    `source` reads another file);
    `training` is candidate_model's run config. Returns stage times (and with `memory` each
    stage's peak RSS) and the test metrics.
    """
    import mlflow
    from mlflow import MlflowClient

    from mlassets.config import EvaluationConfig, SplitConfig, TrainingConfig
    from mlassets.ml import steps
    from mlassets.ml.defaults import SplitSettings
    from mlassets.spec import DEFAULT_SPEC, load_spec

    cfg = TrainingConfig(**(training or {}))
    split_cfg, eval_cfg = SplitConfig(), EvaluationConfig()
    spec = load_spec(DEFAULT_SPEC)
    uri = f"sqlite:///{home / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(uri, uri)
    if client.get_experiment_by_name(spec.name) is None:
        client.create_experiment(spec.name, (home / "mlartifacts").resolve().as_uri())
    mlflow.set_experiment(spec.name)
    clock = Clock(memory)
    run = mlflow.start_run()
    run_id = run.info.run_id
    try:
        with clock("raw_data"):
            raw = steps.read_raw(
                str(source or home / "data" / "transactions.parquet"), None, spec
            ).rows
        with clock("data_quality"):
            quality = steps.validate_raw(raw, spec)
        if quality.failed:
            raise ValueError(f"data quality failed: {quality.failed}")
        with clock("features"):
            features = steps.make_features(quality.rows, spec)
        del raw, quality
        with clock("splits"):
            parts = steps.make_splits(features, spec, SplitSettings(**split_cfg.model_dump()))
        del features
        train, validation, test = (parts.frames[n] for n in steps.SPLIT_NAMES)
        with clock("candidate_model"):
            trained = steps.train_and_log(client, run_id, train, validation, spec, cfg)
        candidate = trained.candidate
        with clock("evaluation_report"):
            report = steps.evaluate_and_log(
                client, run_id, candidate, test, spec, eval_cfg.report_settings()
            ).report
        if not report.passed:
            raise ValueError(f"gates failed: {report.failed}")
        with clock("registered_model"):
            registered = steps.register_candidate(
                client, run_id, candidate, report, train, test, spec
            ).record
        with clock("staging_model"):
            staged, _ = steps.stage(client, registered, candidate, test, spec)
        with clock("production_model"):
            steps.promote_staged(client, staged)
    finally:
        mlflow.end_run()
    return {
        "times": clock.times,
        "peaks_kib": clock.peaks,
        "total": sum(clock.times.values()),
        "metrics": report.metrics,
        "version": registered.version,
    }
