"""Benchmark: what Dagster costs, and how much memory training_job needs.

**Overhead.** `training_job` with a fixed configuration (no search: one histogram gradient-boosting
fit) on 1,000,000 rows, run as a user runs it, `dagster job execute -m mlassets.definitions -j
training_job` in a fresh process, against `benchmarks.direct.training_job`, the same
`mlassets.ml` calls in one fresh process (`python -m benchmarks.child direct`). Both from the same
Parquet file, each with its own Dagster home and MLflow SQLite registry, warmed by one untimed run
so that every timed run has a production model to compare with (as in real life) and registers a
new version. Runs alternate between the two; the figure is the ratio of the median wall times of
the whole processes (interpreter start, imports and code location load included).

**Memory.** Peak RSS (`ru_maxrss`) of those processes at 1,000,000 rows, and of one
`training_job` run on 5,000,000 rows, with the stage that peaks (from the direct path, which can
reset the peak between stages).

Usage: .venv/bin/python -m benchmarks.bench_overhead [--rows 1000000] [--runs 3] [--big 5000000]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.common import ROOT, gib, quick, run_child, secs, table

FIXED = {"strategy": "fixed", "estimator": "hist_gradient_boosting"}
STEP = re.compile(r'Finished execution of step "(\w+)" in ([\d.]+)(ms|s|m)\b')


def _home(root: Path, name: str, source: Path) -> Path:
    home = root / name
    (home / "data").mkdir(parents=True)
    (home / "dagster").mkdir()
    shutil.copy(source, home / "data" / "transactions.parquet")
    (home / "dagster" / "dagster.yaml").write_text(
        (ROOT / "deploy" / "local" / "dagster.yaml").read_text()
    )
    return home


def _env(home: Path) -> dict[str, str]:
    """The home's environment, serving the bundled fraud spec alone under today's names
    (`training_job`): the figures compare with earlier runs."""
    from mlassets.spec import DEFAULT_SPEC

    drop = ("MLFLOW_TRACKING_URI", "MLASSETS_SPEC", "MLASSETS_SPECS")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    return {
        **env,
        "MLASSETS_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster"),
        "MLASSETS_SPEC": str(DEFAULT_SPEC),
    }


def dagster_run(home: Path, training: dict) -> dict:
    """training_job through the Dagster CLI in a fresh process."""
    config = home / "run_config.json"
    config.write_text(json.dumps({"ops": {"candidate_model": {"config": training}}}))
    cmd = [
        str(Path(sys.executable).parent / "dagster"),
        "job",
        "execute",
        "-m",
        "mlassets.definitions",
        "-j",
        "training_job",
        "-c",
        str(config),
    ]
    t = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=_env(home), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    # os.wait4, not communicate(), so that the child's rusage (peak RSS) is ours to read; a
    # thread drains the log meanwhile
    chunks: list[str] = []
    reader = threading.Thread(target=lambda: chunks.append(proc.stdout.read()))
    reader.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    reader.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    out = "".join(chunks)
    if proc.returncode or "RUN_SUCCESS" not in out:
        raise RuntimeError(f"training_job failed:\n{out[-4000:]}")
    steps: dict[str, float] = {}
    for name, value, unit in STEP.findall(out):
        steps[name] = float(value) * {"ms": 1e-3, "s": 1.0, "m": 60.0}[unit]
    return {"wall": wall, "maxrss_kib": usage.ru_maxrss, "steps": steps}


def direct_run(home: Path, training: dict, memory: bool = False) -> dict:
    """The same mlassets.ml calls in a fresh process (benchmarks.child direct)."""
    args = ["direct", "--home", str(home), "--training", json.dumps(training)]
    t = time.perf_counter()
    out = run_child([*args, *(["--memory"] if memory else [])], env=_env(home))
    out["process_wall"] = time.perf_counter() - t
    return out


def _data(root: Path, rows: int) -> Path:
    run_child(["data", "--home", str(root / f"src{rows}"), "--rows", str(rows)])
    return root / f"src{rows}" / "data" / "transactions.parquet"


# Dagster step -> direct stage (candidate_model's threshold is timed apart in the direct path)
STAGES = {
    "raw_data": ["raw_data"],
    "data_quality": ["data_quality"],
    "features": ["features"],
    "splits": ["splits"],
    "candidate_model": ["candidate_model", "threshold"],
    "evaluation_report": ["evaluation_report"],
    "registered_model": ["registered_model"],
    "staging_model": ["staging_model"],
    "production_model": ["production_model"],
}


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000 if quick() else 1_000_000)
    parser.add_argument("--runs", type=int, default=1 if quick() else 3)
    parser.add_argument("--big", type=int, default=0 if quick() else 5_000_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        source = _data(root, args.rows)
        homes = {p: _home(root, p, source) for p in ("dagster", "direct")}
        dagster_run(homes["dagster"], FIXED)  # warm-up: storage, registry, a production model
        direct_run(homes["direct"], FIXED)
        dag, dire = [], []
        for _ in range(args.runs):
            dag.append(dagster_run(homes["dagster"], FIXED))
            print(f"  dagster {args.rows:,}: {dag[-1]['wall']:.1f} s", file=sys.stderr)
            dire.append(direct_run(homes["direct"], FIXED))
            print(f"  direct {args.rows:,}: {dire[-1]['process_wall']:.1f} s", file=sys.stderr)
        staged = direct_run(homes["direct"], FIXED, memory=True)
        big = None
        if args.big:
            shutil.rmtree(homes["dagster"])
            shutil.rmtree(homes["direct"])
            big_source = _data(root, args.big)
            big = {
                "dagster": dagster_run(_home(root, "big_dagster", big_source), FIXED),
                "direct": direct_run(_home(root, "big_direct", big_source), FIXED, memory=True),
            }
            print(f"  dagster {args.big:,}: {big['dagster']['wall']:.1f} s", file=sys.stderr)

    d_wall = statistics.median(r["wall"] for r in dag)
    x_wall = statistics.median(r["process_wall"] for r in dire)
    ratio = d_wall / x_wall
    d_steps = {k: statistics.median(r["steps"].get(k, 0.0) for r in dag) for k in STAGES}
    x_stages = {
        k: statistics.median(sum(r["times"].get(s, 0.0) for s in v) for r in dire)
        for k, v in STAGES.items()
    }
    overhead = table(
        ["training_job, fixed config", "runs", "wall time (median)", "sum of steps", "peak RSS"],
        [
            [
                "through Dagster (`dagster job execute`)",
                args.runs,
                secs(d_wall),
                secs(sum(d_steps.values())),
                gib(statistics.median(r["maxrss_kib"] for r in dag)),
            ],
            [
                "mlassets.ml called directly, one process",
                args.runs,
                secs(x_wall),
                secs(sum(x_stages.values())),
                gib(statistics.median(r["maxrss_kib"] for r in dire)),
            ],
        ],
    )
    per_step = table(
        ["step", "Dagster step (median)", "direct (median)", "difference"],
        [
            [k, secs(d_steps[k]), secs(x_stages[k]), f"{d_steps[k] - x_stages[k]:+.2f} s"]
            for k in STAGES
        ],
    )
    text = (
        f"{args.rows:,} rows, run config `{json.dumps(FIXED)}`.\n\n"
        + overhead
        + f"\n\nRatio of wall times, Dagster / direct: **{ratio:.2f}** (target <= 1.3: "
        + ("met" if ratio <= 1.3 else "MISSED")
        + "). Per step (Dagster's own step timer, which includes loading inputs and storing "
        "outputs through the IO manager; its asset checks run as separate steps and are "
        "left out here):\n\n" + per_step
    )
    mem_rows = []

    def peak_stage(r: dict) -> str:
        peaks = {k: v for k, v in (r.get("peaks_kib") or {}).items() if v}
        if not peaks:
            return ""
        k = max(peaks, key=peaks.get)
        return f"{k} ({gib(peaks[k])})"

    mem_rows.append(
        [
            f"{args.rows:,}",
            gib(statistics.median(r["maxrss_kib"] for r in dag)),
            gib(statistics.median(r["maxrss_kib"] for r in dire)),
            peak_stage(staged),
        ]
    )
    if big:
        mem_rows.append(
            [
                f"{args.big:,}",
                gib(big["dagster"]["maxrss_kib"]),
                gib(big["direct"]["maxrss_kib"]),
                peak_stage(big["direct"]),
            ]
        )
    text += "\n\nPeak memory:\n\n" + table(
        ["rows", "training_job through Dagster", "direct", "stage that peaks (direct)"], mem_rows
    )
    staged_runs = {f"{args.rows:,}": staged}
    if big:
        staged_runs[f"{args.big:,}"] = big["direct"]
    text += "\n\nPeak RSS by stage (direct path, the peak reset before each stage):\n\n" + table(
        ["stage", *(f"{k} rows" for k in staged_runs)],
        [
            [s, *(gib(r["peaks_kib"].get(s) or 0) for r in staged_runs.values())]
            for s in staged["peaks_kib"]
        ],
    )
    one = statistics.median(r["maxrss_kib"] for r in dag)
    text += (
        f"\n\nTarget under 4 GiB at {args.rows:,} rows: {'met' if one < 4 * 2**20 else 'MISSED'}."
    )
    if big:
        text += (
            f" At {args.big:,} rows training_job took {secs(big['dagster']['wall'])} and peaked "
            f"at {gib(big['dagster']['maxrss_kib'])}."
        )
    print(text)
    return text


if __name__ == "__main__":
    main()
