"""Benchmark: what running each step in its own process costs (`MLASSETS_EXECUTOR=multiprocess`)
against the default, every step in one process (`in_process`).

`training_job` with the default training config (`fast`: successive halving of gradient boosting,
its fits on loky workers) as a user runs it, `dagster job execute -m mlassets.definitions -j
training_job` in a fresh process, once per executor, on the same Parquet file (the fairness gate
reported, not gated: this measures execution, not the synthetic data), each executor with
its own Dagster home and MLflow SQLite registry, warmed by one untimed run so that every timed run
has a production model to compare with. Runs alternate between the two executors; the figure is
the ratio of the median wall times of the whole processes. The multiprocess executor starts a
process per step (and per asset check) that imports the code location, sklearn and MLflow again
and reads its inputs from the value store; the graph is a chain, so little runs at once.

Usage: .venv/bin/python -m benchmarks.bench_executors [--rows 100000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.bench_overhead import STAGES, _data, _env, _home
from benchmarks.common import ROOT, quick, secs, table

EXECUTORS = ("in_process", "multiprocess")
STEP = re.compile(r'Finished execution of step "(\w+)" in ([\d.hms]+)\.')
UNIT = re.compile(r"([\d.]+)(ms|h|m|s)")
# TrainingConfig's defaults (the `fast` strategy); the fairness gate reports without gating, so
# that a run on synthetic data always reaches production_model and both executors run every step.
RUN_CONFIG = {
    "ops": {
        "candidate_model": {"config": {}},
        "evaluation_report": {"config": {"max_equalized_odds": None}},
    }
}


def run(home: Path, executor: str) -> dict:
    """training_job through the Dagster CLI in a fresh process, under `executor`."""
    config = home / "run_config.json"
    config.write_text(json.dumps(RUN_CONFIG))
    dagster = str(Path(sys.executable).parent / "dagster")
    cmd = [dagster, "job", "execute", "-m", "mlassets.definitions", "-j", "training_job"]
    env = {**_env(home), "MLASSETS_EXECUTOR": executor}
    t = time.perf_counter()
    proc = subprocess.run(
        [*cmd, "-c", str(config)], cwd=ROOT, env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - t
    out = proc.stdout + proc.stderr
    if proc.returncode or "RUN_SUCCESS" not in out:
        raise RuntimeError(f"training_job ({executor}) failed:\n{out[-4000:]}")
    return {"wall": wall, "steps": {name: _seconds(text) for name, text in STEP.findall(out)}}


def _seconds(text: str) -> float:
    """Dagster's step duration (`533ms`, `2.1s`, `4m52s`, `1h4m`) in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3}
    return sum(float(v) * units[u] for v, u in UNIT.findall(text))


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000 if quick() else 100_000)
    parser.add_argument("--runs", type=int, default=1 if quick() else 3)
    args = parser.parse_args(argv)
    results: dict[str, list[dict]] = {e: [] for e in EXECUTORS}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        source = _data(root, args.rows)
        homes = {e: _home(root, e, source) for e in EXECUTORS}
        for e in EXECUTORS:  # warm-up: storage, registry, a production model
            run(homes[e], e)
        for _ in range(args.runs):
            for e in EXECUTORS:
                results[e].append(run(homes[e], e))
                print(f"  {e} {args.rows:,}: {results[e][-1]['wall']:.1f} s", file=sys.stderr)

    wall = {e: statistics.median(r["wall"] for r in results[e]) for e in EXECUTORS}
    steps = {
        e: {k: statistics.median(r["steps"].get(k, 0.0) for r in results[e]) for k in STAGES}
        for e in EXECUTORS
    }
    ratio = wall["multiprocess"] / wall["in_process"]
    overview = table(
        ["training_job, default config", "runs", "wall time (median)", "sum of asset steps"],
        [
            [f"`MLASSETS_EXECUTOR={e}`", args.runs, secs(wall[e]), secs(sum(steps[e].values()))]
            for e in EXECUTORS
        ],
    )
    per_step = table(
        ["step", "in_process (median)", "multiprocess (median)", "difference"],
        [
            [
                k,
                secs(steps["in_process"][k]),
                secs(steps["multiprocess"][k]),
                f"{steps['multiprocess'][k] - steps['in_process'][k]:+.2f} s",
            ]
            for k in STAGES
        ],
    )
    return (
        f"{args.rows:,} rows, {os.cpu_count()} cores, `multiprocess` with max_concurrent "
        f"{os.environ.get('MLASSETS_MAX_CONCURRENT', '2')}.\n\n"
        + overview
        + f"\n\nRatio of wall times, multiprocess / in_process: **{ratio:.2f}**. Per step "
        "(Dagster's step timer; a multiprocess step's own process start and imports come "
        "before it and count only in the wall time):\n\n" + per_step
    )


if __name__ == "__main__":
    print(main())
