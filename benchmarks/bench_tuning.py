"""Benchmark: the default strategy `fast` against the seed's grid search, on the same test rows.

Per table and size, three pipelines on the same seeded synthetic table, in one process:

- **seed script** (`benchmarks/seed_pipeline.py`): the seed's own stages, the yardstick;
- **seed_grid**: `mlassets.ml` with TrainingConfig(strategy="seed_grid"): the seed's grid on our
  features, split and tuned threshold (what `candidate_model` does with that strategy);
- **fast** (the default): the same with TrainingConfig() defaults.

Each pipeline runs validation, feature engineering, the split, the search, (for ours) the
threshold and the test metrics; the wall time is all of it, after a warm-up that pays for
imports and the worker pool. Runs of `fast` are interleaved with the slow ones so that the load
of a shared machine weighs on both alike. The test rows are the same for all three (the same
stratified split of the same table; checked).

Usage: .venv/bin/python -m benchmarks.bench_tuning [--case fraud:20000] [--seed-runs 3] ...
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass

import numpy as np

from benchmarks.common import fmt, quick, secs, table

PIPELINES = ("seed script", "seed_grid", "fast")


@dataclass
class Case:
    table: str
    rows: int
    seed_runs: int = 1
    seed_grid_runs: int = 1
    fast_runs: int = 5

    def runs(self) -> dict[str, int]:
        return {
            "seed script": self.seed_runs,
            "seed_grid": self.seed_grid_runs,
            "fast": self.fast_runs,
        }


# On 2 cores one run of the seed's grid takes about 3 min at 20,000 rows and about 20 at
# 100,000: the slow pipelines repeat only on the first case (--seed-runs / --seed-grid-runs).
FULL = [
    Case("fraud", 20_000, seed_runs=3, seed_grid_runs=3, fast_runs=5),
    Case("churn", 20_000, seed_runs=1, seed_grid_runs=1, fast_runs=5),
    Case("fraud", 100_000, seed_runs=1, seed_grid_runs=1, fast_runs=3),
]
QUICK = [
    Case("fraud", 5_000, seed_runs=1, seed_grid_runs=1, fast_runs=3),
    Case("churn", 5_000, seed_runs=1, seed_grid_runs=1, fast_runs=3),
]


def _schedule(runs: dict[str, int]) -> list[str]:
    """fast, slow, fast, slow, ...: the fast runs spread between the slow ones."""
    slow = [p for p in ("seed script", "seed_grid") for _ in range(runs[p])]
    order: list[str] = []
    fast = runs["fast"]
    for p in slow:
        if fast:
            order.append("fast")
            fast -= 1
        order.append(p)
    return order + ["fast"] * fast


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _warm_up(spec, make_frame) -> None:
    from benchmarks.direct import pipeline

    pipeline(make_frame(3000, seed=1), spec, "fast")


def run_case(case: Case, log=None) -> dict:
    """Every run of the case; returns per pipeline its times, metrics and parameters."""
    from benchmarks import seed_pipeline
    from benchmarks.direct import pipeline
    from benchmarks.tables import TABLES

    make_spec, make_frame = TABLES[case.table]
    spec = make_spec()
    df = make_frame(case.rows, seed=42)
    _warm_up(spec, make_frame)
    results: dict[str, list[dict]] = {p: [] for p in PIPELINES}
    for name in _schedule(case.runs()):
        t = time.perf_counter()
        out = seed_pipeline.run(df, spec) if name == "seed script" else pipeline(df, spec, name)
        out["wall"] = time.perf_counter() - t
        results[name].append(out)
        (log or _stderr)(
            f"  {case.table} {case.rows:,} {name}: {out['wall']:.1f} s, f1 {out['metrics']['f1']:.4f}"
        )
    same_rows = all(
        set(results[p][0]["test_index"]) == set(results["fast"][0]["test_index"]) for p in PIPELINES
    )
    summary = {}
    for p, outs in results.items():
        train = [o["times"].get("search", 0) + o["times"].get("threshold", 0) for o in outs]
        summary[p] = {
            "runs": len(outs),
            "wall": statistics.median(o["wall"] for o in outs),
            "train": statistics.median(train),
            "metrics": outs[-1]["metrics"],
            "best_params": outs[-1]["best_params"],
            "threshold": outs[-1].get("threshold", 0.5),
        }
    return {
        "case": case,
        "summary": summary,
        "same_test_rows": same_rows,
        "test_rows": len(df) // 5,
    }


def _params(p: dict) -> str:
    skip = {"max_iter", "early_stopping"}
    return ", ".join(f"{k}={v}" for k, v in sorted(p.items()) if k not in skip)


def report(results: list[dict]) -> str:
    """The side-by-side table and one verdict line per case."""
    rows, verdicts = [], []
    for r in results:
        case, s = r["case"], r["summary"]
        fast = s["fast"]
        for p in PIPELINES:
            x = s[p]
            m = x["metrics"]
            rows.append(
                [
                    case.table,
                    f"{case.rows:,}",
                    f"**{p}**" if p == "fast" else p,
                    x["runs"],
                    secs(x["wall"]),
                    secs(x["train"]) if p != "seed script" else "",
                    f"{x['wall'] / s['seed script']['wall']:.3f}",
                    fmt(m["f1"]),
                    fmt(m["pr_auc"]),
                    f"{x['threshold']:g}",
                    _params(x["best_params"]),
                ]
            )
        for base in ("seed script", "seed_grid"):
            b = s[base]
            ratio = fast["wall"] / b["wall"]
            d_f1 = fast["metrics"]["f1"] - b["metrics"]["f1"]
            d_pr = fast["metrics"]["pr_auc"] - b["metrics"]["pr_auc"]
            ok = ratio <= 0.1 and d_f1 >= 0 and d_pr >= 0
            verdicts.append(
                f"- {case.table} {case.rows:,} rows, fast vs {base}: wall time x{ratio:.3f} "
                f"({1 / ratio:.0f} times faster), F1 {d_f1:+.4f}, PR AUC {d_pr:+.4f}: "
                f"{'meets' if ok else 'MISSES'} the target (<= 0.1 of the time, F1 and PR AUC "
                "at least as high)"
            )
        if not r["same_test_rows"]:
            verdicts.append(f"- WARNING: {case.table} {case.rows:,}: test rows differ")
    sizes = ", ".join(f"{r['test_rows']:,}" for r in results)
    head = [
        "table",
        "rows",
        "pipeline",
        "runs",
        "wall time (median)",
        "search + threshold",
        "time / seed script",
        "test F1",
        "test PR AUC",
        "threshold",
        "chosen parameters",
    ]
    return (
        table(head, rows, "llllrrrrrrl")
        + "\n\n"
        + "\n".join(verdicts)
        + f"\n\nTest rows: a fifth of each table ({sizes}), the same rows for the three "
        "pipelines. F1 is at each pipeline's decision threshold (0.5 for the seed script, which "
        "had no tuning; the validation-tuned threshold for ours), PR AUC is threshold-free."
    )


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", action="append", help="table:rows, e.g. fraud:20000")
    parser.add_argument("--seed-runs", type=int)
    parser.add_argument("--seed-grid-runs", type=int)
    parser.add_argument("--fast-runs", type=int)
    args = parser.parse_args(argv)
    cases = QUICK if quick() else FULL
    if args.case:
        cases = [Case(c.split(":")[0], int(c.split(":")[1])) for c in args.case]
    for c in cases:
        c.seed_runs = args.seed_runs or c.seed_runs
        c.seed_grid_runs = args.seed_grid_runs or c.seed_grid_runs
        c.fast_runs = args.fast_runs or c.fast_runs
    results = [run_case(c) for c in cases]
    text = report(results)
    print(text)
    return text


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
