"""`training_job` without Dagster: the same `mlassets.ml` calls its assets and checks make, in order.

The yardstick for Dagster's overhead (bench_overhead) and the stage clock for scaling
(bench_scaling). Each stage calls exactly what the asset or check of the same name calls in
`mlassets/ml/` (reading, fingerprints, the Great Expectations suite, features, split and its
check, search, threshold, MLflow logging, the evaluation report, gates, registration, the
verified aliases); what it leaves out is Dagster's: run and event storage, IO managers (pickling
each asset value to disk and back), asset metadata and logs.

`pipeline(df, spec, ...)` is the lighter path the tuning benchmark times against the seed's
script: validation, features, split, search, threshold, test metrics (no MLflow).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

REFERENCE_ROWS = 50_000  # as mlassets.assets.registry


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
            spec.numeric_inputs,
            spec.features.categorical,
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

    from mlassets.config import EvaluationConfig, GateConfig, SplitConfig, TrainingConfig
    from mlassets.ml.data import fingerprint, read_table, target
    from mlassets.ml.evaluation import gate
    from mlassets.ml.features import build_features, input_frame
    from mlassets.ml.registry import (
        STAGING,
        log_pipeline,
        log_reference,
        predictions_match,
        promote,
        register,
        set_alias_verified,
    )
    from mlassets.ml.report import build_evaluation, load_baseline, log_report
    from mlassets.ml.report import log_threshold_choice as log_choice
    from mlassets.ml.splitting import check_splits, split
    from mlassets.ml.threshold import choose_threshold
    from mlassets.ml.training import estimator_for, train_candidate
    from mlassets.ml.validation import by_check, validate
    from mlassets.spec import DEFAULT_SPEC, load_spec

    cfg = TrainingConfig(**(training or {}))
    split_cfg, eval_cfg, gates = SplitConfig(), EvaluationConfig(), GateConfig()
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
    try:
        with clock("raw_data"):
            raw = read_table(str(source or home / "data" / "transactions.parquet"), spec)
            raw_fp = fingerprint(raw)
        with clock("data_quality"):
            outcomes = by_check(validate(raw, spec))
        if any(not o.success for group in outcomes.values() for o in group):
            raise ValueError("data quality failed")
        with clock("features"):
            features = build_features(raw, spec)
            fingerprint(features)
        del raw
        with clock("splits"):
            parts = split(
                features,
                target(features, spec),
                test_fraction=split_cfg.test_fraction,
                validation_fraction=split_cfg.validation_fraction,
                seed=split_cfg.seed,
                stratify=split_cfg.stratify,
            )
            for part in (parts.train, parts.validation, parts.test):
                float(target(part, spec).mean())
            check_splits(parts, lambda d: target(d, spec), spec.id)
        del features
        with clock("candidate_model"):
            X, y = input_frame(parts.train, spec), target(parts.train, spec)
            estimator = estimator_for(cfg.strategy, cfg.estimator)
            result = train_candidate(
                X, y, spec.numeric_inputs, spec.features.categorical, **cfg.search_settings()
            )
            del X, y
        with clock("threshold"):
            choice = choose_threshold(
                result.model,
                input_frame(parts.validation, spec),
                target(parts.validation, spec),
                metric=cfg.threshold_metric,
                tune=cfg.tune_threshold,
                seed=cfg.seed,
            )
            mlflow.log_params(
                {
                    "strategy": cfg.strategy,
                    "estimator": estimator,
                    "train_rows": len(parts.train),
                    "train_fingerprint": fingerprint(parts.train),
                    **{f"best_{k}": v for k, v in result.best_params.items()},
                }
            )
            log_choice(choice)
            if not result.cv_table.empty:
                mlflow.log_table(result.cv_table.astype(str), artifact_file="cv_results.json")
        model = choice.model
        with clock("evaluation_report"):
            X_test, y_test = input_frame(parts.test, spec), target(parts.test, spec)
            baseline = load_baseline(client, spec.name)
            evaluation = build_evaluation(
                model, X_test, y_test, parts.test[spec.sensitive], baseline, **eval_cfg.model_dump()
            )
            report = evaluation.report
            log_report(report, evaluation.images)
            verdicts = gate(report["metrics"], gates.thresholds())
        if not all(v.passed for v in verdicts):
            raise ValueError(f"gates failed: {[v.describe() for v in verdicts if not v.passed]}")
        with clock("registered_model"):
            info = log_pipeline(model, X_test)
            reference = parts.train[[*spec.input_columns, spec.label.column]]
            if len(reference) > REFERENCE_ROWS:
                reference = reference.sample(REFERENCE_ROWS, random_state=0)
            log_reference(reference, {"metrics": report["metrics"], "data_fingerprint": raw_fp})
            tags = {f"test_{k}": f"{v:.6f}" for k, v in report["metrics"].items()}
            mv = register(client, spec.name, info.model_uri, run.info.run_id, tags)
        with clock("staging_model"):
            expected = model.predict(X_test)
            set_alias_verified(client, spec.name, mv.version, STAGING, X_test, expected)
            predictions_match(f"models:/{spec.name}@{STAGING}", X_test, model.predict(X_test))
        with clock("production_model"):
            promote(client, spec.name, mv.version)
    finally:
        mlflow.end_run()
    return {
        "times": clock.times,
        "peaks_kib": clock.peaks,
        "total": sum(clock.times.values()),
        "metrics": report["metrics"],
        "version": str(mv.version),
    }
