"""The benchmark's tables: the bundled fraud data and a second, differently shaped one.

The second table (`churn`) is wide where fraud is narrow: 24 numeric columns (five with 5 %
missing values, heavy tails, a few pure noise), three categorical ones (one with 40 levels), no
timestamp and no derived features, about 10 % positives (fraud: about 4 %), and a label driven by
interactions (a product of two columns, a gated step, a sine) rather than fraud's near-additive
score. A strategy that only suits the fraud rule would show it here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlassets.spec import DEFAULT_SPEC, DatasetSpec, load_spec

CHURN_NUMERIC = [f"x{i:02d}" for i in range(24)]
CHURN_CATEGORICAL = ["region", "plan", "channel"]
PLANS = ["basic", "plus", "pro", "team", "enterprise"]
CHANNELS = ["web", "app", "partner"]
REGIONS = [f"r{i:02d}" for i in range(40)]


def churn_spec() -> DatasetSpec:
    """The second table's spec (built in code: the benchmark never reads it from a file)."""
    columns = {"customer_id": {"type": "integer", "nullable": False, "unique": True}}
    columns |= {c: {"type": "float"} for c in CHURN_NUMERIC}
    columns |= {
        "region": {"type": "category", "values": REGIONS},
        "plan": {"type": "category", "values": PLANS},
        "channel": {"type": "category", "values": CHANNELS},
        "churned": {"type": "integer", "nullable": False, "values": [0, 1]},
    }
    return DatasetSpec.model_validate(
        {
            "name": "churn_benchmark",
            "source": "churn.parquet",
            "label": {"column": "churned", "positive": 1},
            "id": "customer_id",
            "sensitive": ["plan"],
            "min_rows": 1000,
            "columns": columns,
            "features": {"numeric": CHURN_NUMERIC, "categorical": CHURN_CATEGORICAL},
        }
    )


def churn_frame(rows: int, seed: int = 42) -> pd.DataFrame:
    """`rows` customers with a churn label that depends on interactions between columns."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, len(CHURN_NUMERIC)))
    x[:, 6] = rng.standard_t(3, rows)  # heavy tails
    x[:, 7] = rng.lognormal(0.0, 1.0, rows)
    region = rng.integers(0, len(REGIONS), rows)
    plan = rng.choice(len(PLANS), rows, p=[0.35, 0.25, 0.2, 0.12, 0.08])
    channel = rng.choice(len(CHANNELS), rows, p=[0.5, 0.35, 0.15])
    region_effect = np.random.default_rng(1234).normal(0, 0.6, len(REGIONS))
    plan_effect = np.array([0.6, 0.2, 0.0, -0.4, -0.8])
    score = (
        1.1 * x[:, 0]
        - 0.8 * x[:, 1]
        + 1.4 * x[:, 2] * x[:, 3]
        + 1.2 * np.sin(2.0 * x[:, 4])
        + 1.3 * ((x[:, 5] > 0.8) & (channel == 2))
        + 0.5 * np.clip(x[:, 6], -4, 4)
        - 0.6 * np.log(x[:, 7])
        + 0.4 * x[:, 8] ** 2
        + region_effect[region]
        + plan_effect[plan]
        + rng.normal(0, 0.5, rows)
    )
    churned = (score > np.quantile(score, 0.9)).astype(np.int64)
    df = pd.DataFrame(x.round(4), columns=CHURN_NUMERIC)
    for c in CHURN_NUMERIC[10:15]:  # missing values the imputer has to handle
        df.loc[rng.random(rows) < 0.05, c] = np.nan
    df.insert(0, "customer_id", np.arange(1, rows + 1, dtype=np.int64))
    df["region"] = np.asarray(REGIONS, dtype=object)[region]
    df["plan"] = np.asarray(PLANS, dtype=object)[plan]
    df["channel"] = np.asarray(CHANNELS, dtype=object)[channel]
    df["churned"] = churned
    return df


def fraud_spec() -> DatasetSpec:
    return load_spec(DEFAULT_SPEC)


def fraud_frame(rows: int, seed: int = 42) -> pd.DataFrame:
    from mlassets.synthetic import fraud_frame as frame

    return frame(rows, seed=seed)


TABLES = {"fraud": (fraud_spec, fraud_frame), "churn": (churn_spec, churn_frame)}
