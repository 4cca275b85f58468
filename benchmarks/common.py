"""Helpers shared by the benchmark sections: machine facts, medians, child processes, tables."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")


def quick() -> bool:
    """BENCH_QUICK=1: smaller tables and fewer repeats (minutes instead of an hour)."""
    return os.environ.get("BENCH_QUICK", "").strip() not in ("", "0", "false", "no")


def machine_facts() -> list[tuple[str, str]]:
    """What the figures depend on: cores, memory, CPU, Python and library versions."""
    from importlib.metadata import version

    mem = "unknown"
    try:
        with open("/proc/meminfo") as f:
            kib = int(next(line for line in f if line.startswith("MemTotal")).split()[1])
        mem = f"{kib / 2**20:.1f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line for line in f if line.startswith("model name")).split(":", 1)[1].strip()
    except (OSError, StopIteration):
        pass
    libs = [
        "dagster",
        "scikit-learn",
        "pandas",
        "numpy",
        "great-expectations",
        "mlflow",
        "pyarrow",
    ]
    return [
        ("cores", str(os.cpu_count())),
        ("memory", mem),
        ("CPU", cpu),
        ("OS", platform.platform()),
        ("Python", platform.python_version()),
        ("libraries", ", ".join(f"{lib} {version(lib)}" for lib in libs)),
    ]


def median_time(
    fn: Callable[[], Any], runs: int, warmup: int = 0
) -> tuple[float, list[float], Any]:
    """(median seconds, every run's seconds, the last result) of `runs` calls after `warmup`."""
    result = None
    for _ in range(warmup):
        result = fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), times, result


def run_child(
    args: Sequence[str], env: dict[str, str] | None = None, timeout: float = 3600
) -> dict:
    """Run `python -m benchmarks.child <args>` and return the JSON it prints last.

    A child process gives a clean peak RSS (`ru_maxrss`) and a cold start, as a real run has.
    """
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.child", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child {list(args)} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None) -> str:
    """A markdown table; `align` is one character per column, l or r (default: l then r)."""
    align = align or "l" + "r" * (len(header) - 1)
    sep = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(sep) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def secs(x: float) -> str:
    return f"{x:.2f} s" if x < 100 else f"{x:.0f} s"


def gib(kib: float) -> str:
    return f"{kib / 2**20:.2f} GiB"


def fmt(v: float) -> str:
    return f"{v:.4f}"
