"""Work a benchmark runs in a fresh process, reporting JSON on its last line of output.

    python -m benchmarks.child direct --home DIR [--training JSON] [--memory] [--warmup N]
        training_job's mlassets.ml calls without Dagster (benchmarks.direct.training_job)
    python -m benchmarks.child data --home DIR --rows N
        write N synthetic fraud rows to DIR/data/transactions.parquet

Every report carries `wall` (seconds from the start of the process's work, imports included)
and `maxrss_kib` (this process's peak resident set size).
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

START = time.perf_counter()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["direct", "data"])
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--training", default="{}")
    parser.add_argument("--rows", type=int, default=0)
    parser.add_argument("--memory", action="store_true", help="peak RSS per stage")
    parser.add_argument(
        "--warmup",
        type=int,
        default=0,
        help="first run training_job on this many rows (untimed): imports, pools, a baseline",
    )
    args = parser.parse_args(argv)
    out: dict = {}
    if args.command == "direct":
        import mlassets.settings  # noqa: F401  (telemetry off first)
        from benchmarks.direct import training_job

        training = json.loads(args.training)
        if args.warmup:
            from mlassets.synthetic import fraud_frame, write_frame

            small = write_frame(
                fraud_frame(args.warmup, seed=1), args.home / "data" / "warmup.parquet"
            )
            training_job(args.home, training, source=small)
        result = training_job(args.home, training, memory=args.memory)
        out = {k: result[k] for k in ("times", "peaks_kib", "total", "metrics", "version")}
    else:
        from mlassets.synthetic import fraud_frame, write_frame

        write_frame(fraud_frame(args.rows, seed=42), args.home / "data" / "transactions.parquet")
    out["wall"] = time.perf_counter() - START
    # with --memory the peak was reset before each stage: the run's peak is the largest of them
    peaks = [v for v in (out.get("peaks_kib") or {}).values() if v]
    out["maxrss_kib"] = max([resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, *peaks])
    print(json.dumps(out, default=str))


if __name__ == "__main__":
    main()
