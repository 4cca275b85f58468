"""`make bench`: every benchmark section, one markdown report on stdout.

    python -m benchmarks [SECTION ...] [--out FILE]

Sections, in order: load, validation, tuning, overhead, scaling, drift, sensor, executors, memory,
estimation, gates (default: all).
BENCH_QUICK=1 runs small tables and fewer repeats, to check the benchmarks themselves; a full run
takes about 95 minutes on 2 cores, most of it the seed's grid search (tuning), and
benchmarks/RESULTS.md records one. Every figure is a median of repeated runs
(the table says how many) and every comparison a ratio measured in the same invocation. No test
asserts a time: the report says whether each target was met.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import sys
import time

from benchmarks.common import machine_facts, quick, table

SECTIONS = {
    "load": "Code location load",
    "validation": "Data quality at scale: Great Expectations vs pandas",
    "tuning": "Tuning: the default strategy against the seed's grid search",
    "overhead": "Orchestration overhead and memory of training_job",
    "scaling": "Scaling: time per stage",
    "drift": "Drift decision on large batches",
    "sensor": "drift_sensor tick",
    "executors": "Executors: every step in its own process against one process",
    "memory": "Memory of training_job: peak PSS of all its processes, per stage",
    "estimation": "Performance before the labels: estimated vs realized F1 (CBPE)",
    "gates": "What the gates' defaults rest on: trivial baselines, shuffled labels, random groups",
}


def _run(name: str) -> str:
    if name == "load":
        from benchmarks.bench_load import main
    elif name == "validation":
        from benchmarks.bench_validation import main
    elif name == "tuning":
        from benchmarks.bench_tuning import main
    elif name == "overhead":
        from benchmarks.bench_overhead import main
    elif name == "scaling":
        from benchmarks.bench_scaling import main
    elif name == "executors":
        from benchmarks.bench_executors import main
    elif name == "memory":
        from benchmarks.bench_memory import main
    elif name == "estimation":
        from benchmarks.bench_estimation import main
    elif name == "gates":
        from benchmarks.bench_gates import main
    elif name == "drift":
        from benchmarks.bench_drift import main

        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            main(["--runs", "3", "--sizes", "100000"] if quick() else [])
        return buf.getvalue().strip()
    else:
        from benchmarks.bench_sensor import main

        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            main(["--runs", "1"] if quick() else [])
        return buf.getvalue().strip()
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        text = main([])
    return text


def header() -> str:
    now = datetime.datetime.now(datetime.UTC)
    mode = "quick (BENCH_QUICK=1)" if quick() else "full"
    return (
        "# mlassets benchmarks\n\n"
        f"Run {now:%Y-%m-%d %H:%M} UTC, {mode} mode, `python -m benchmarks`.\n\n"
        + table(["machine", ""], machine_facts(), "ll")
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sections", nargs="*", help=f"any of: {', '.join(SECTIONS)}")
    parser.add_argument("--out", help="also write the report to this file")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {unknown}; known: {', '.join(SECTIONS)}")
    chosen = args.sections or list(SECTIONS)
    parts = [header()]
    print(parts[0] + "\n", flush=True)
    for i, name in enumerate(SECTIONS, 1):
        if name not in chosen:
            continue
        t = time.perf_counter()
        print(f"[{name}] running ...", file=sys.stderr, flush=True)
        body = _run(name)
        part = f"## {i}. {SECTIONS[name]}\n\n{body}\n\n_(section took {time.perf_counter() - t:.0f} s)_"
        parts.append(part)
        print(part + "\n", flush=True)
        if args.out:
            with open(args.out, "w") as f:
                f.write("\n\n".join(parts) + "\n")


if __name__ == "__main__":
    main()
