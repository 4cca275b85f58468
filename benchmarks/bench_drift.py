"""Benchmark: the retrain decision (`mlassets.ml.drift.drift_report`) on big recent batches.

Prints a markdown table: wall time of the decision (median of 5 runs, after one warm-up run that
pays for imports) and the peak memory it allocates beyond its inputs (tracemalloc), for 1,000,000
and 100,000 recent rows of the fraud features against a 50,000-row reference. Two cases each:
features only (no labels), and labelled rows scored by a production forest (50 trees; the model
sees a seeded sample of at most `max_eval_rows` = 100,000 labelled rows, as the report says).
Generating the data and building the features are not timed.

Usage: .venv/bin/python benchmarks/bench_drift.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import tracemalloc
from functools import partial


def _setup(reference_rows: int):
    from mlassets.ml.data import target
    from mlassets.ml.drift import reference_sample
    from mlassets.ml.features import build_features, input_frame
    from mlassets.ml.training import make_estimator, spec_pipeline
    from mlassets.spec import load_spec
    from mlassets.synthetic import fraud_frame

    spec = load_spec()
    train = build_features(fraud_frame(reference_rows, seed=7), spec)
    model = spec_pipeline(spec, make_estimator("random_forest", {"n_estimators": 50}))
    model.fit(input_frame(train, spec), target(train, spec))
    reference = reference_sample(
        train, [*spec.input_columns, spec.label.column], reference_rows, seed=0
    )
    baseline = {"accuracy": 0.99, "f1": 0.9}  # the decision's cost does not depend on these
    return spec, reference, model, baseline


def _measure(fn, runs: int) -> tuple[float, float, object]:
    """(median seconds over `runs` after a warm-up, peak MiB allocated in one more run, result)."""
    from benchmarks.common import median_time

    seconds, _, result = median_time(fn, runs, warmup=1)
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return seconds, peak / 2**20, result


def main(argv: list[str] | None = None) -> None:
    from mlassets.ml.drift import drift_report
    from mlassets.ml.features import build_features
    from mlassets.synthetic import fraud_batch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--reference-rows", type=int, default=50_000)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 100_000])
    args = parser.parse_args(argv)

    spec, reference, model, baseline = _setup(args.reference_rows)
    lines = [
        f"Drift decision, {args.reference_rows:,}-row reference, {os.cpu_count()} CPU(s), "
        f"median of {args.runs} runs",
        "",
        "| recent rows | case | decision | drifted | wall time (median) | peak memory (decision) "
        "| recent frame |",
        "|---:|---|---|---|---:|---:|---:|",
    ]
    for rows in args.sizes:
        recent = build_features(fraud_batch(rows, seed=11, drift="covariate"), spec)
        size = recent.memory_usage(deep=True).sum() / 2**20
        decide = partial(
            drift_report,
            reference,
            numeric=spec.numeric_inputs,
            categorical=spec.features.categorical,
        )
        cases = {
            "features only": partial(decide, recent.drop(columns=spec.label.column)),
            "labels + forest": partial(
                decide,
                recent,
                model=model,
                label=spec.label.column,
                positive=spec.label.positive,
                baseline=baseline,
                model_inputs=spec.model_inputs,  # the Pipeline derives its features itself
            ),
        }
        for case, fn in cases.items():
            seconds, peak, report = _measure(fn, args.runs)
            scored = report.degradation.evaluated_rows
            if scored:
                case += f" ({scored:,} rows scored)"
            lines.append(
                f"| {rows:,} | {case} | {'retrain' if report.retrain else 'no retrain'} | "
                f"{', '.join(report.drifted) or '-'} | {seconds:.3f} s | {peak:,.0f} MiB "
                f"| {size:,.0f} MiB |"
            )
        del recent
    print("\n".join(lines))


if __name__ == "__main__":
    main()
