"""Benchmark: peak memory (PSS) of the whole training_job, per stage, at 1,000,000 rows and more.

`training_job` runs as a user runs it, `dagster job execute -m mlassets.definitions -j
training_job` in a fresh process (the code location's default: in-process executor, the default
`fast` search, default config), on synthetic fraud rows (`mlassets.synthetic.fraud_frame`). Every
~0.2 s the benchmark sums the PSS (proportional set size, psutil `memory_full_info().pss`) of that
process and all its descendants (joblib's loky workers): PSS splits a page shared by several
processes between them, so the sum is what the job really occupies, unlike a sum of RSS, which
counts shared pages once per process. The stage of a sample is the step that was running, from
Dagster's step-start events on the run's stdout (in-process: one step at a time); `startup` is
interpreter start, imports and code location load, `teardown` what follows the last step.

Each size runs in its own Dagster home, warmed by one untimed run on 10,000 rows (the demo's table), so that the timed
run compares with a production model and registers a new version, as in real life.

Usage: .venv/bin/python -m benchmarks.bench_memory [--rows 1000000] [--full] [--training JSON]
    --full adds a 10,000,000-row run (about half an hour on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.common import ROOT, quick, run_child, secs, table

STEP_START = re.compile(r'Started execution of step "([\w.\[\]-]+)"')
TARGETS = {1_000_000: 1.0, 10_000_000: 8.0}  # GiB of PSS for the whole job (issue 10)


def _pss(proc) -> tuple[int, int, int]:
    """(PSS of `proc` and all its descendants, PSS of `proc` alone, processes read), bytes;
    0 for what is gone."""
    import psutil

    try:
        tree = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0, 0, 0
    total = main = count = 0
    for p in tree:
        try:
            pss = p.memory_full_info().pss
        except psutil.Error:  # a worker that exited between listing and reading
            continue
        total += pss
        count += 1
        if p.pid == proc.pid:
            main = pss
    return total, main, count


def measure(home: Path, training: dict, interval: float = 0.2) -> dict:
    """Run training_job in a fresh process and sample the PSS of its process tree until it ends.

    Returns the peak over the run and per stage (all processes and the main one), each stage's
    seconds, the most processes seen at once and the wall time.
    """
    import psutil

    config = home / "run_config.json"
    config.write_text(json.dumps({"ops": {"candidate_model": {"config": training}}}))
    cmd = [str(Path(sys.executable).parent / "dagster"), "job", "execute"]
    cmd += ["-m", "mlassets.definitions", "-j", "training_job", "-c", str(config)]
    from mlassets.spec import DEFAULT_SPEC

    # the bundled fraud spec alone, under today's names (`training_job`)
    drop = ("MLFLOW_TRACKING_URI", "MLASSETS_SPEC", "MLASSETS_SPECS")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["MLASSETS_SPEC"] = str(DEFAULT_SPEC)
    env.update(
        MLASSETS_HOME=str(home),
        DAGSTER_HOME=str(home / "dagster"),
        MLFLOW_DISABLE_TELEMETRY="true",
        MLFLOW_ALLOW_PICKLE_DESERIALIZATION="false",
        MLASSETS_EXECUTOR="in_process",
    )
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # one process group: nothing outlives the benchmark
    )
    stage = ["startup"]
    starts: list[tuple[str, float]] = [("startup", 0.0)]
    lines: list[str] = []

    def read() -> None:
        for line in proc.stdout:
            lines.append(line)
            m = STEP_START.search(line)
            if m:
                stage[0] = m.group(1)
                starts.append((m.group(1), time.perf_counter() - t0))
            elif "RUN_SUCCESS" in line or "RUN_FAILURE" in line:
                stage[0] = "teardown"
                starts.append(("teardown", time.perf_counter() - t0))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    peaks: dict[str, list[int]] = {}  # stage -> [peak of all processes, peak of the main one]
    most = 1
    try:
        ps = psutil.Process(proc.pid)
        while proc.poll() is None:
            now = stage[0]
            total, main, count = _pss(ps)
            most = max(most, count)
            peak = peaks.setdefault(now, [0, 0])
            peak[0], peak[1] = max(peak[0], total), max(peak[1], main)
            time.sleep(interval)
    except psutil.Error:
        pass
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
        proc.wait()
        reader.join(timeout=10)
    wall = time.perf_counter() - t0
    out = "".join(lines)
    if proc.returncode or "RUN_SUCCESS" not in out:
        raise RuntimeError(f"training_job failed:\n{out[-4000:]}")
    seconds: dict[str, float] = {}
    for (name, t), (_, t_next) in zip(starts, [*starts[1:], ("end", wall)], strict=True):
        seconds[name] = seconds.get(name, 0.0) + t_next - t
    return {
        "wall": wall,
        "peak": max(p[0] for p in peaks.values()),
        "peak_main": max(p[1] for p in peaks.values()),
        "stages": {
            k: {"pss": v[0], "main": v[1], "seconds": seconds.get(k, 0.0)} for k, v in peaks.items()
        },
        "order": list(dict.fromkeys(name for name, _ in starts)),
        "processes": most,
    }


def _home(root: Path, rows: int) -> Path:
    """A Dagster and MLassets home with `rows` fraud rows, warmed by a 10,000-row run."""
    home = root / f"home{rows}"
    (home / "dagster").mkdir(parents=True)
    (home / "dagster" / "dagster.yaml").write_text(
        (ROOT / "deploy" / "local" / "dagster.yaml").read_text()
    )
    run_child(["data", "--home", str(home), "--rows", "10000"])
    measure(home, {})  # warm-up: storage, registry, a production model to compare with
    run_child(["data", "--home", str(home), "--rows", str(rows)])
    return home


def _gib(b: float) -> str:
    return f"{b / 2**30:.2f} GiB"


def report(results: dict[int, dict], training: dict) -> str:
    sizes = sorted(results)
    order = list(dict.fromkeys(s for n in sizes for s in results[n]["order"]))
    rows = []
    for s in order:
        cells = [s]
        for n in sizes:
            st = results[n]["stages"].get(s)
            cells += (
                [_gib(st["pss"]), _gib(st["main"]), secs(st["seconds"])] if st else ["", "", ""]
            )
        rows.append(cells)
    rows.append(
        ["**whole job**"]
        + [
            c
            for n in sizes
            for c in (
                f"**{_gib(results[n]['peak'])}**",
                _gib(results[n]["peak_main"]),
                secs(results[n]["wall"]),
            )
        ]
    )
    head = ["stage"]
    for n in sizes:
        head += [f"{n:,} rows: PSS, all processes", "main process", "seconds"]
    lines = []
    for n in sizes:
        r = results[n]
        verdict = ""
        if n in TARGETS:
            ok = r["peak"] <= TARGETS[n] * 2**30
            verdict = f" (target <= {TARGETS[n]:.1f} GiB: {'met' if ok else 'MISSED'})"
        lines.append(
            f"- {n:,} rows: whole job peaks at {_gib(r['peak'])} PSS across up to "
            f"{r['processes']} processes{verdict}; the main process alone at "
            f"{_gib(r['peak_main'])}; {secs(r['wall'])} wall time."
        )
    config = (
        json.dumps(training)
        if training
        else "(defaults: strategy fast, n_jobs unset: one process, each fit on every core)"
    )
    return (
        f"`dagster job execute -j training_job`, in-process executor, training config {config}; "
        "peak PSS sampled every 0.2 s over the job's process and its descendants (loky workers), "
        "one run per size.\n\n" + table(head, rows) + "\n\n" + "\n".join(lines)
    )


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[200_000 if quick() else 1_000_000])
    parser.add_argument("--full", action="store_true", help="also 10,000,000 rows")
    parser.add_argument("--training", default="{}", help="candidate_model config (JSON)")
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between samples")
    args = parser.parse_args(argv)
    training = json.loads(args.training)
    sizes = sorted({*args.rows, *([10_000_000] if args.full else [])})
    results: dict[int, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rows in sizes:
            home = _home(Path(tmp), rows)
            results[rows] = measure(home, training, args.interval)
            print(
                f"  {rows:,}: peak {_gib(results[rows]['peak'])} in {results[rows]['wall']:.0f} s",
                file=sys.stderr,
            )
            shutil.rmtree(home)
    text = report(results, training)
    print(text)
    return text


if __name__ == "__main__":
    main()
