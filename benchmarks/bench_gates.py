"""Benchmark: what the gates' defaults rest on (`mlassets.ml.gates`, `mlassets.ml.fairness`).

Per table (the bundled fraud and churn, and two real public tables packages ship: the census
employment table NannyML ships and the `fair` affairs survey statsmodels ships), at 5,000 rows
(the size of a first table of one's own) and at more, the default pipeline's model against:
- the trivial baseline `beats_baseline` compares with (for F1 every row positive), and a model
  trained the same way on shuffled labels (no signal): where `min_lift` must sit;
- groups drawn at random from the model's own test rows (fair by construction): how often the
  raw equalized odds gap passes 0.1, and how often it does beyond its sampling noise (the gate);
  and a group that misses 40 % of its true positives, which the gate must catch.
Fixed seeds; nothing is timed.

Usage: .venv/bin/python -m benchmarks gates   (BENCH_QUICK=1: the 5,000-row tables only)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks.common import quick, table

SEED = 42
DRAWS = 300  # random groupings per table
GROUPS = list("abcd")
DROPPED = 0.4  # the disadvantaged group's share of true positives turned into misses


def fair_table():
    """statsmodels' `fair` survey (Fair 1978, 6,366 women): whether she had an affair."""
    import pandas as pd
    import statsmodels.api as sm

    from mlassets.spec import DatasetSpec

    df = sm.datasets.fair.load_pandas().data.copy()
    df["affair"] = (df.pop("affairs") > 0).astype("int64")
    df.insert(0, "id", np.arange(len(df)))
    categorical = ["occupation", "occupation_husb", "religious", "rate_marriage", "educ"]
    for c in categorical:
        df[c] = df[c].astype(int).astype(str)
    columns = {"id": {"type": "integer", "nullable": False, "unique": True}}
    columns |= {c: {"type": "float"} for c in ("age", "yrs_married", "children")}
    columns |= {c: {"type": "category"} for c in categorical}
    columns["affair"] = {"type": "integer", "values": [0, 1]}
    spec = DatasetSpec.model_validate(
        {
            "name": "fair",
            "source": "fair.csv",
            "label": {"column": "affair", "positive": 1},
            "id": "id",
            "columns": columns,
            "features": {"numeric": ["age", "yrs_married", "children"], "categorical": categorical},
        }
    )
    return pd.DataFrame(df[list(columns)]), spec


def tables():
    """(name, frame, spec) of each table at each size; the real ones when their package is."""
    from importlib.util import find_spec

    from benchmarks.real_tables import census, census_folder, census_spec
    from mlassets.spec import BUNDLED_SPECS, load_spec
    from mlassets.synthetic import table_batch

    sizes = (5_000,) if quick() else (5_000, 50_000)
    for name in ("fraud", "churn"):
        spec = load_spec(BUNDLED_SPECS / f"{name}.yaml")
        for rows in sizes:
            yield f"{name}", table_batch(name, rows, seed=SEED), spec
    if census_folder() is not None:
        df = census()
        df = df[df["year"] == 2015].drop(columns="year")
        spec = census_spec()
        spec = spec.model_copy(
            update={"columns": {k: v for k, v in spec.columns.items() if k != "year"}}
        )
        for rows in (5_000,) if quick() else (5_000, 30_000):
            yield "census (real)", df.sample(rows, random_state=1).reset_index(drop=True), spec
    if find_spec("statsmodels") is not None:
        df, spec = fair_table()
        for rows in (5_000,) if quick() else (5_000, len(df)):
            yield "fair (real)", df.sample(rows, random_state=1).reset_index(drop=True), spec


def fit(df, spec) -> tuple[np.ndarray, np.ndarray]:
    """The default pipeline on `df`: its test rows' labels (1 positive) and its predictions."""
    from benchmarks.bench_estimation import one_core
    from benchmarks.direct import pipeline
    from mlassets.ml.data import target
    from mlassets.ml.features import input_frame

    with one_core():
        result = pipeline(df, spec, "fast", n_jobs=1, seed=SEED, validate=False)
    test = result["splits"].test
    return target(test, spec).to_numpy(), np.asarray(
        result["model"].predict(input_frame(test, spec))
    )


def measure(name: str, df, spec, rng) -> dict[str, Any]:
    """One table at one size: the lifts, and the fairness gate on random and dropped groups."""
    import pandas as pd

    from mlassets.ml.fairness import column_fairness
    from mlassets.ml.gates import TRIVIAL
    from mlassets.ml.threshold import count_metric

    def f1(y, p) -> float:
        tp, fp = np.sum((p == 1) & (y == 1)), np.sum((p == 1) & (y != 1))
        fn = np.sum((p != 1) & (y == 1))
        return float(count_metric("f1", tp, fp, fn, np.sum((p != 1) & (y != 1))))

    trivial = TRIVIAL["f1"][1]
    y, pred = fit(df, spec)
    shuffled = df.copy()
    shuffled[spec.label.column] = rng.permutation(shuffled[spec.label.column].to_numpy())
    ys, preds = fit(shuffled, spec)
    raw = beyond = 0
    for _ in range(DRAWS):
        groups = pd.Series(rng.choice(GROUPS, len(y)), name="group")
        col = column_fairness(y, pred, groups, max_equalized_odds=0.1)
        raw += (col.equalized_odds_difference or 0) > 0.1
        beyond += not col.passed
    groups = pd.Series(rng.choice(GROUPS, len(y)), name="group")
    worse = pred.copy()
    hit = np.flatnonzero((groups.to_numpy() == "a") & (y == 1) & (pred == 1))
    worse[rng.choice(hit, int(DROPPED * len(hit)), replace=False)] = 0
    caught = column_fairness(y, worse, groups, max_equalized_odds=0.1)
    return {
        "table": name,
        "rows": len(df),
        "test_rows": len(y),
        "positive_rate": float(np.mean(y == 1)),
        "f1": f1(y, pred),
        "trivial": trivial(float(np.mean(y == 1))),
        "shuffled_lift": f1(ys, preds) - trivial(float(np.mean(ys == 1))),
        "raw_over": raw / DRAWS,
        "beyond_over": beyond / DRAWS,
        "dropped_gap": caught.equalized_odds_difference,
        "dropped_noise": caught.noise["equalized_odds"],
        "dropped_caught": not caught.passed,
        "dropped_positives": int(caught.groups.loc["a", "positives"]),
        "dropped_gated": bool(caught.groups.loc["a", "tpr_gated"]),
    }


def main(argv: list[str] | None = None) -> str:
    """The section's markdown (argv is unused: BENCH_QUICK chooses the sizes)."""
    from mlassets.ml.defaults import EVALUATION

    rng = np.random.default_rng(SEED)
    rows = [measure(name, df, spec, rng) for name, df, spec in tables()]
    lifts = table(
        ["table", "rows", "positives", "F1", "every row positive", "lift", "lift, shuffled labels"],
        [
            [
                r["table"],
                f"{r['rows']:,}",
                f"{r['positive_rate']:.1%}",
                f"{r['f1']:.4f}",
                f"{r['trivial']:.4f}",
                f"{r['f1'] - r['trivial']:+.4f}",
                f"{r['shuffled_lift']:+.4f}",
            ]
            for r in rows
        ],
    )
    fairness = table(
        [
            "table",
            "test rows",
            "random groups: gap > 0.1",
            "beyond its noise",
            f"a group missing {DROPPED:.0%} of its TPs",
        ],
        [
            [
                r["table"],
                f"{r['test_rows']:,}",
                f"{r['raw_over']:.0%}",
                f"{r['beyond_over']:.0%}",
                (
                    f"gap {r['dropped_gap']:.3f} ± {r['dropped_noise']:.3f}: "
                    + ("caught" if r["dropped_caught"] else "not told from chance")
                )
                if r["dropped_gated"]
                else f"TPR not gated: {r['dropped_positives']} positives in the group (< 30)",
            ]
            for r in rows
        ],
    )
    below = [r for r in rows if r["f1"] - r["trivial"] < EVALUATION.min_lift]
    return (
        "**(a) the trivial baseline and `min_lift`**: each table's default model on its own test "
        "rows against predicting every row positive (`beats_baseline`'s baseline for F1), and "
        "the same pipeline trained on shuffled labels (no signal). `min_lift` = "
        f"{EVALUATION.min_lift}: real models below it: "
        + (", ".join(f"{r['table']} at {r['rows']:,} rows" for r in below) or "none")
        + "\n\n"
        + lifts
        + "\n\n**(b) the fairness gate on groups fair by construction**: "
        f"{DRAWS} random splits of each test set into {len(GROUPS)} groups of the same model's "
        "answers; a share of them with an equalized odds gap over 0.1 is a false alarm of the "
        "raw rule, beyond its noise one of the gate's (1.96 standard errors of the two rates' "
        "difference). Then one group missing "
        f"{DROPPED:.0%} of its true positives, which it should catch\n\n" + fairness
    )


if __name__ == "__main__":
    print(main())
