"""Benchmark: loading the code location.

`dagster definitions validate -m mlassets.definitions` (what `dagster dev`, the daemon and every
run do first) timed as a whole process, and `import mlassets.definitions` alone, each the median
of several fresh processes; and which heavy libraries the import pulls in (none should: they are
imported inside the functions that need them).

Usage: .venv/bin/python -m benchmarks.bench_load [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import ROOT, quick, secs, table

HEAVY = (
    "sklearn",
    "mlflow",
    "great_expectations",
    "scipy",
    "matplotlib",
    "fairlearn",
    "skops",
    "dagster_mlflow",
)
PROBE = (
    "import sys, time; t = time.perf_counter(); import mlassets.definitions; "
    "print(time.perf_counter() - t); "
    f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
)


def _timed(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} failed:\n{proc.stderr[-3000:]}")
    return wall, proc.stdout


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3 if quick() else 7)
    args = parser.parse_args(argv)
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        (home / "dagster").mkdir()
        (home / "dagster" / "dagster.yaml").write_text(
            (ROOT / "deploy" / "local" / "dagster.yaml").read_text()
        )
        env = {
            **os.environ,
            "MLASSETS_HOME": str(home),
            "DAGSTER_HOME": str(home / "dagster"),
        }
        validate = [
            str(bin_dir / "dagster"),
            "definitions",
            "validate",
            "-m",
            "mlassets.definitions",
        ]
        _timed(validate, env)  # warm the file cache
        cli = [_timed(validate, env)[0] for _ in range(args.runs)]
        imports, heavy = [], ""
        for _ in range(args.runs):
            wall, out = _timed([sys.executable, "-c", PROBE], env)
            lines = out.strip().splitlines()
            imports.append(float(lines[0]))
            heavy = lines[1] if len(lines) > 1 else ""
    cli_s, imp_s = statistics.median(cli), statistics.median(imports)
    rows = [
        [
            "`dagster definitions validate -m mlassets.definitions` (whole process)",
            args.runs,
            secs(cli_s),
            f"{min(cli):.2f}-{max(cli):.2f} s",
        ],
        [
            "`import mlassets.definitions` (in a fresh interpreter)",
            args.runs,
            secs(imp_s),
            f"{min(imports):.2f}-{max(imports):.2f} s",
        ],
    ]
    text = table(["code location load", "runs", "median", "range"], rows)
    text += (
        f"\n\nTarget under 3 s: {'met' if cli_s < 3 else 'MISSED'}. Heavy libraries imported by "
        f"loading the definitions: {heavy or 'none'} (checked: {', '.join(HEAVY)})."
    )
    print(text)
    return text


if __name__ == "__main__":
    main()
