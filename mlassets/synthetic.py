"""Synthetic fraud-detection data in the seed's schema, so everything runs offline.

Fraud (`label == 1`, 3-8 % of rows) follows a learnable but noisy rule over `feature_1`,
`feature_2`, the purchase rate and the category, so a tuned forest passes the seed's gates while
an all-negative predictor fails the F1 gate. The same seed always writes the same bytes.

Usage: python -m mlassets.synthetic --rows 10000 --seed 42 --out data/transactions.parquet

New batches for monitoring, with or without drift (`fraud_batch`), one file each:
python -m mlassets.synthetic --rows 20000 --seed 1 --batches 3 --drift covariate --out data/landing
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

CATEGORIES = ["electronics", "grocery", "travel", "fashion"]
START = pd.Timestamp("2025-01-01")
DRIFTS = ("none", "covariate", "concept")
# Where batches start by default: after the 180 days `fraud_frame` covers from START, and with ids
# far above any training table's, so landed batches appended to the source keep user_id unique.
BATCH_START = START + pd.Timedelta(days=180)
BATCH_FIRST_ID = 1_000_000_001


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


def _purchase_rate(df: pd.DataFrame) -> np.ndarray:
    """Purchases per day of account age, as `fraud_frame`'s fraud rule sees it."""
    days = (df["timestamp"].dt.normalize() - df["signup_date"]).dt.days.to_numpy()
    return df["total_purchases"].to_numpy() / np.maximum(days, 1)


def _fraud_label(
    feature_1: np.ndarray,
    feature_2: np.ndarray,
    category: np.ndarray,
    rate: np.ndarray,
    noise: np.ndarray,
    concept: bool = False,
) -> np.ndarray:
    """The fraud rule: `fraud_frame`'s own (high feature_1, risky category), or the drifted one.

    The drifted concept mirrors it (low feature_1, the other categories), so it keeps a similar
    positive rate while the positives move to where a model trained on the original rule says no.
    """
    risky = np.isin(category, ["electronics", "travel"])
    f1 = (1 - feature_1 / 100) if concept else feature_1 / 100
    score = (
        4.0 * f1**3
        + 1.6 * (np.log(feature_2) > 3.6)
        + 1.2 * (~risky if concept else risky)
        + 1.5 * (rate > 0.12)
        + noise
    )
    return (score > 4.8).astype(np.int64)


def fraud_batch(
    rows: int,
    seed: int,
    drift: str = "none",
    first_id: int = 1,
    start: pd.Timestamp = START,
) -> pd.DataFrame:
    """A batch of `rows` new transactions, with no drift, covariate drift or concept drift.

    - `none`: exactly `fraud_frame(rows, seed, first_id, start)`, the training distribution.
    - `covariate`: `feature_1` leans high, `feature_2` grows by 40 % and the category mix moves
      towards electronics and travel; labels follow the same rule, so the model is still right
      where it has data, but the inputs no longer look like the training set.
    - `concept`: the features keep their training distribution but fraud follows a different
      rule, so feature drift tests stay quiet while the production model's accuracy and F1 drop.

    The label noise (and the covariate shifts) come from a second generator seeded from `seed`,
    so the same arguments always give the same rows.
    """
    if drift not in DRIFTS:
        raise ValueError(f"drift {drift!r} is unknown (known: {list(DRIFTS)})")
    df = fraud_frame(rows, seed, first_id=first_id, start=start)
    if drift == "none":
        return df
    rng = np.random.default_rng([seed, DRIFTS.index(drift)])
    if drift == "covariate":
        df["feature_1"] = (100 * (df["feature_1"] / 100) ** 0.7).round(3)
        df["feature_2"] = (df["feature_2"] * 1.4).round(2)
        df["category"] = rng.choice(CATEGORIES, rows, p=[0.45, 0.2, 0.25, 0.1])
    df["label"] = _fraud_label(
        df["feature_1"].to_numpy(),
        df["feature_2"].to_numpy(),
        df["category"].to_numpy(),
        _purchase_rate(df),
        rng.normal(0, 0.15, rows),
        concept=drift == "concept",
    )
    return df


def batch_seed(seed: int, index: int) -> int:
    """The seed of the `index`-th batch of a run seeded with `seed` (independent streams)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def write_batches(
    out: str | Path,
    batches: int,
    rows: int,
    seed: int,
    drift: str = "none",
    first_id: int = BATCH_FIRST_ID,
    start: pd.Timestamp = BATCH_START,
) -> list[Path]:
    """Write `batches` files batch_0001.parquet, ... into the folder `out`; ids never repeat."""
    paths = []
    for i in range(1, batches + 1):
        df = fraud_batch(rows, batch_seed(seed, i), drift, first_id + (i - 1) * rows, start)
        paths.append(write_frame(df, Path(out) / f"batch_{i:04d}.parquet"))
    return paths


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
    """Command line entry point: write a synthetic fraud dataset, or N batches into a folder."""
    parser = argparse.ArgumentParser(
        prog="python -m mlassets.synthetic",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rows", type=int, default=10_000, help="rows per file")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--out", required=True, help="a .parquet or .csv path; with --batches, a folder"
    )
    parser.add_argument(
        "--batches",
        type=int,
        default=0,
        help="write this many batch_NNNN.parquet files into the folder --out",
    )
    parser.add_argument("--drift", choices=DRIFTS, default="none", help="drift in the data")
    parser.add_argument(
        "--first-id",
        type=int,
        default=None,
        help=f"the first user_id (default 1; {BATCH_FIRST_ID:,} with --batches)",
    )
    parser.add_argument(
        "--start",
        type=pd.Timestamp,
        default=None,
        help=f"the first day of the timestamps (default {START.date()}; "
        f"{BATCH_START.date()} with --batches)",
    )
    args = parser.parse_args(argv)
    if args.batches < 0 or args.rows < 0:
        parser.error("--rows and --batches cannot be negative")
    if args.batches:
        paths = write_batches(
            args.out,
            args.batches,
            args.rows,
            args.seed,
            args.drift,
            BATCH_FIRST_ID if args.first_id is None else args.first_id,
            BATCH_START if args.start is None else args.start,
        )
        print(
            f"wrote {len(paths)} batch(es) of {args.rows:,} rows ({args.drift} drift) "
            f"to {Path(args.out)}"
        )
        return
    first_id = 1 if args.first_id is None else args.first_id
    start = START if args.start is None else args.start
    df = fraud_batch(args.rows, args.seed, args.drift, first_id, start)  # "none": fraud_frame
    path = write_frame(df, args.out)
    print(f"wrote {len(df):,} rows ({df['label'].mean():.1%} positive) to {path}")


if __name__ == "__main__":
    main()
