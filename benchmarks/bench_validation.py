"""Benchmark: the Great Expectations suite on 1,000,000 rows against the same rules in pandas.

`mlassets.ml.validation.validate` (what the `data_quality` check runs: an ephemeral GE context,
the suite generated from the spec, one validation pass) against `benchmarks.pandas_rules.check`
(the same rules as vectorized pandas), on the fraud table as `raw_data` holds it. Steady state is
the median of repeated calls after a warm-up; the first call in a fresh process (importing GE and
building its context) is measured in a child process. Both must agree: on a clean table neither
finds anything, and on a copy with injected faults (missing and duplicate ids, values out of
range, unknown categories) they count the same offending rows per check.

Usage: .venv/bin/python -m benchmarks.bench_validation [--rows 1000000] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import numpy as np

from benchmarks.common import ROOT, median_time, quick, secs, table


def _faulty(df):
    """A copy with known faults in each rule family."""
    bad = df.copy()
    rng = np.random.default_rng(0)
    n = len(bad)
    idx = rng.choice(n, 4_000, replace=False)
    bad.loc[bad.index[idx[:1000]], "feature_1"] = 150.0  # values_in_range
    bad.loc[bad.index[idx[1000:2000]], "category"] = "crypto"  # values_allowed
    bad.loc[bad.index[idx[2000:2500]], "user_id"] = bad["user_id"].iloc[0]  # unique
    bad["user_id"] = bad["user_id"].astype("float64")
    bad.loc[bad.index[idx[2500:3000]], "user_id"] = np.nan  # not_null
    bad.loc[bad.index[idx[3000:4000]], "total_purchases"] = -1  # values_in_range
    return bad


def _ge_counts(outcomes) -> dict[str, int]:
    from mlassets.ml.validation import by_check

    return {
        name: sum(
            (o.unexpected_count or 0) if o.unexpected_count is not None else int(not o.success)
            for o in group
            if not o.success
        )
        for name, group in by_check(outcomes).items()
    }


COLD = """
import json, time
from mlassets.spec import DEFAULT_SPEC, load_spec
from mlassets.synthetic import fraud_frame
spec = load_spec(DEFAULT_SPEC); df = fraud_frame({rows}, seed=42)
t = time.perf_counter()
from mlassets.ml.validation import validate
validate(df, spec)
print(json.dumps(time.perf_counter() - t))
"""


def main(argv: list[str] | None = None) -> str:
    from benchmarks.pandas_rules import check
    from mlassets.ml.validation import build_suite, validate
    from mlassets.spec import DEFAULT_SPEC, load_spec
    from mlassets.synthetic import fraud_frame

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000 if quick() else 1_000_000)
    parser.add_argument("--runs", type=int, default=3 if quick() else 5)
    args = parser.parse_args(argv)
    spec = load_spec(DEFAULT_SPEC)
    df = fraud_frame(args.rows, seed=42)
    validate(df.head(1000), spec)  # warm-up: imports, context
    ge, ge_all, outcomes = median_time(lambda: validate(df, spec), args.runs)
    pd_s, pd_all, counts = median_time(lambda: check(df, spec), args.runs)
    clean = not any(counts.values()) and all(o.success for o in outcomes)
    bad = _faulty(df)
    ge_bad, pd_bad = _ge_counts(validate(bad, spec)), check(bad, spec)
    pd_bad = {k: v for k, v in pd_bad.items() if k in ge_bad}
    agree = ge_bad == pd_bad
    proc = subprocess.run(
        [sys.executable, "-c", COLD.format(rows=args.rows)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    cold = json.loads(proc.stdout.strip().splitlines()[-1])
    n_exp = len(build_suite(spec).expectations)
    rows = [
        [
            f"Great Expectations ({n_exp} expectations, one pass)",
            args.runs,
            secs(ge),
            f"{min(ge_all):.2f}-{max(ge_all):.2f} s",
            f"{ge / pd_s:.1f}",
        ],
        [
            "vectorized pandas, same rules",
            args.runs,
            secs(pd_s),
            f"{min(pd_all):.2f}-{max(pd_all):.2f} s",
            "1.0",
        ],
        [
            "Great Expectations, first call in a fresh process (import + context)",
            1,
            secs(cold),
            "",
            "",
        ],
    ]
    text = table([f"suite on {args.rows:,} rows", "runs", "median", "range", "x pandas"], rows)
    text += (
        f"\n\nTarget: the suite under 2 s on {args.rows:,} rows: "
        f"{'met' if ge < 2 else 'MISSED'} ({secs(ge)} steady state; {secs(cold)} for the first call "
        f"in a process). Clean table: {'no findings from either' if clean else 'FINDINGS'}. "
        f"Injected faults, offending rows per check, GE {ge_bad} vs pandas {pd_bad}: "
        f"{'identical' if agree else 'DIFFERENT'}."
    )
    print(text)
    return text


if __name__ == "__main__":
    main()
