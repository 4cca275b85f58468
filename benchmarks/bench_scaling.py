"""Benchmark: time per stage of training_job at 100,000, 300,000 and 1,000,000 rows.

The stages are `benchmarks.direct.training_job`'s (the `mlassets.ml` calls of each asset of
`training_job`, Dagster left out), with the default TrainingConfig (strategy `fast`), each size in
a fresh process warmed by one untimed run on 5,000 rows (imports, the worker pool, a production
model to compare with). A stage grows no faster than n log n when its time at 1,000,000 rows is at
most 12.0 times its time at 100,000 (10 x log(10^6) / log(10^5)).

Usage: .venv/bin/python -m benchmarks.bench_scaling [--sizes 100000 300000 1000000]
"""

from __future__ import annotations

import argparse
import math
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from benchmarks.common import quick, run_child, table

STAGES = [
    "raw_data",
    "data_quality",
    "features",
    "splits",
    "candidate_model",
    "threshold",
    "evaluation_report",
    "registered_model",
    "staging_model",
    "production_model",
]


def _runs(rows: int) -> int:
    return 1 if quick() else 3


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = [30_000, 100_000, 300_000] if quick() else [100_000, 300_000, 1_000_000]
    parser.add_argument("--sizes", type=int, nargs="+", default=default)
    parser.add_argument("--training", default="{}", help="candidate_model config (JSON)")
    args = parser.parse_args(argv)
    sizes = sorted(args.sizes)
    medians: dict[int, dict[str, float]] = {}
    runs: dict[int, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rows in sizes:
            src = Path(tmp) / f"src{rows}"
            run_child(["data", "--home", str(src), "--rows", str(rows)])
            results = []
            for i in range(_runs(rows)):
                home = Path(tmp) / f"home{rows}_{i}"
                (home / "data").mkdir(parents=True)
                shutil.copy(src / "data" / "transactions.parquet", home / "data")
                results.append(
                    run_child(
                        ["direct", "--home", str(home), "--training", args.training]
                        + ["--warmup", "5000"]
                    )
                )
                shutil.rmtree(home)
                print(f"  {rows:,}: {results[-1]['total']:.1f} s", file=sys.stderr)
            runs[rows] = len(results)
            medians[rows] = {
                s: statistics.median(r["times"].get(s, 0.0) for r in results) for s in STAGES
            }
            medians[rows]["total"] = statistics.median(r["total"] for r in results)
    lo, hi = sizes[0], sizes[-1]
    bound = (hi / lo) * math.log(hi) / math.log(lo)
    rows_out, worst = [], 0.0
    for s in [*STAGES, "total"]:
        growth = medians[hi][s] / medians[lo][s] if medians[lo][s] > 0 else float("nan")
        worst = max(worst, growth) if s != "total" else worst
        rows_out.append(
            [
                f"**{s}**" if s == "total" else s,
                *(f"{medians[n][s]:.2f} s" for n in sizes),
                f"x{growth:.1f}",
                "yes" if growth <= bound else "NO",
            ]
        )
    head = [
        "stage",
        *(f"{n:,} rows ({'median of ' + str(runs[n]) if runs[n] > 1 else '1 run'})" for n in sizes),
        f"growth {lo:,} -> {hi:,}",
        f"<= n log n (x{bound:.1f})",
    ]
    text = (
        f"Training config {args.training if args.training != '{}' else '(defaults: strategy fast)'}."
        "\n\n"
        + table(head, rows_out)
        + f"\n\nLinear growth would be x{hi / lo:.1f}, n log n x{bound:.1f}; the steepest stage "
        f"grows x{worst:.1f}."
    )
    print(text)
    return text


if __name__ == "__main__":
    main()
