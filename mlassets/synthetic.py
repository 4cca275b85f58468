"""Synthetic fraud-detection data in the seed's schema, so everything runs offline.

Fraud (`label == 1`, 3-8 % of rows) follows a learnable but noisy rule over `feature_1`,
`feature_2`, the purchase rate and the category, so a tuned forest passes the seed's gates while
an all-negative predictor fails the F1 gate. The same seed always writes the same bytes.

Usage: python -m mlassets.synthetic --rows 10000 --seed 42 --out data/transactions.parquet
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

CATEGORIES = ["electronics", "grocery", "travel", "fashion"]
START = pd.Timestamp("2025-01-01")


def fraud_frame(
    rows: int, seed: int = 42, first_id: int = 1, start: pd.Timestamp = START
) -> pd.DataFrame:
    """Return `rows` transactions in the fraud schema with a learnable fraud signal."""
    rng = np.random.default_rng(seed)
    timestamp = start + pd.to_timedelta(rng.integers(0, 180 * 86_400, rows), unit="s")
    account_age_days = rng.gamma(2.0, 200.0, rows).astype(int) + 1
    signup_date = (timestamp - pd.to_timedelta(account_age_days, unit="D")).normalize()
    category = rng.choice(CATEGORIES, rows, p=[0.3, 0.35, 0.15, 0.2])
    feature_1 = rng.uniform(0, 100, rows).round(3)
    feature_2 = rng.lognormal(3.0, 0.8, rows).round(2)
    total_purchases = rng.poisson(np.maximum(account_age_days / 15, 0.5))
    days = (timestamp.normalize() - signup_date).days.to_numpy()
    rate = total_purchases / np.maximum(days, 1)

    risky = np.isin(category, ["electronics", "travel"])
    score = (
        4.0 * (feature_1 / 100) ** 3
        + 1.6 * (np.log(feature_2) > 3.6)
        + 1.2 * risky
        + 1.5 * (rate > 0.12)
        + rng.normal(0, 0.15, rows)
    )
    label = (score > 4.8).astype(np.int64)
    return pd.DataFrame(
        {
            "user_id": np.arange(first_id, first_id + rows, dtype=np.int64),
            "timestamp": timestamp.floor("s"),
            "feature_1": feature_1,
            "feature_2": feature_2,
            "signup_date": signup_date,
            "total_purchases": total_purchases.astype(np.int64),
            "category": category,
            "label": label,
        }
    )


def write_frame(df: pd.DataFrame, out: str | Path) -> Path:
    """Write a frame as Parquet or CSV (by the file's suffix), creating parent folders."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".csv":
        df.to_csv(out, index=False)
    elif out.suffix in (".parquet", ".pq"):
        df.to_parquet(out, index=False)
    else:
        raise ValueError(f"{out}: unsupported suffix {out.suffix!r} (use .csv or .parquet)")
    return out


def main(argv: list[str] | None = None) -> None:
    """Command line entry point: write a synthetic fraud dataset."""
    parser = argparse.ArgumentParser(prog="python -m mlassets.synthetic", description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", required=True, help="a .parquet or .csv path")
    args = parser.parse_args(argv)
    df = fraud_frame(args.rows, args.seed)
    path = write_frame(df, args.out)
    print(f"wrote {len(df):,} rows ({df['label'].mean():.1%} positive) to {path}")


if __name__ == "__main__":
    main()
