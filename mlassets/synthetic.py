"""Synthetic data for the bundled specs (mlassets/specs/), so everything runs offline.

Two tables with a learnable but noisy signal: trained with the default settings each passes the
default gates, while an all-negative predictor fails the F1 gate:
- fraud (fraud.yaml, the seed's schema, the default): `label == 1` on 3-8 % of rows, a noisy rule
  over `feature_1`, `feature_2`, the purchase rate and the category;
- churn (churn.yaml, also the benchmarks' second table): `churned == 1` on about 10 % of rows,
  24 numeric columns (five with missing values), a 40-level region, no timestamp; much of why a
  customer leaves shows in no column, as in real churn (the default model's F1 is about 0.70).
The same seed always writes the same bytes.

Usage: python -m mlassets.synthetic --rows 10000 --seed 42 --out data/transactions.parquet
python -m mlassets.synthetic --table churn --rows 10000 --seed 42 --out data/churn/customers.parquet

New batches for monitoring, with or without drift (`fraud_batch`, `churn_batch`), one file each:
python -m mlassets.synthetic --rows 20000 --seed 1 --batches 3 --drift covariate --out data/landing

Nothing is overwritten. Batches continue after the highest batch_NNNN already in the folder (a
batch a model was trained on keeps its bytes), with ids after the highest one there. An existing
--out file is left as is when it already holds exactly these rows, and refused otherwise unless
--force is given; so `make demo` can run again, and a table of your own is never replaced.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
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
    strength: float = 1.0,
) -> pd.DataFrame:
    """A batch of `rows` new transactions, with no drift, covariate drift or concept drift.

    - `none`: exactly `fraud_frame(rows, seed, first_id, start)`, the training distribution.
    - `covariate`: `feature_1` leans high, `feature_2` grows by 40 % and the category mix moves
      towards electronics and travel; labels follow the same rule, so the model is still right
      where it has data, but the inputs no longer look like the training set.
    - `concept`: the features keep their training distribution but fraud follows a different
      rule, so feature drift tests stay quiet while the production model's accuracy and F1 drop.

    `strength` scales the covariate shift (`_shift`): 0 is none, 1 the shift above, 2 twice
    as far; the label rule stays the same at every strength.

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
        _check_strength(strength)
        df["feature_1"] = (100 * (df["feature_1"] / 100) ** (0.7**strength)).round(3)
        df["feature_2"] = (df["feature_2"] * 1.4**strength).round(2)
        moved = rng.choice(CATEGORIES, rows, p=[0.45, 0.2, 0.25, 0.1])
        df["category"] = _shift(df["category"].to_numpy(), moved, strength, rng)
    df["label"] = _fraud_label(
        df["feature_1"].to_numpy(),
        df["feature_2"].to_numpy(),
        df["category"].to_numpy(),
        _purchase_rate(df),
        rng.normal(0, 0.15, rows),
        concept=drift == "concept",
    )
    return df


# --- the churn table (mlassets/specs/churn.yaml; also the benchmarks' second table) -------------

# 24 numeric columns: five with 5 % missing values, some heavy-tailed, two pure noise.
CHURN_NUMERIC = [
    "tenure_months",
    "contract_months_left",
    "monthly_charges",
    "total_charges",
    "discount_pct",
    "price_change_pct",
    "support_calls_90d",
    "satisfaction_score",
    "days_since_last_login",
    "sessions_30d",
    "avg_session_minutes",
    "feature_adoption",
    "data_usage_gb",
    "devices",
    "seats",
    "payment_failures_12m",
    "late_payments_12m",
    "outage_minutes_30d",
    "referrals",
    "competitor_offers",
    "email_open_rate",
    "billing_day",
    "marketing_score",
    "credit_score",
]
CHURN_MISSING = [
    "total_charges",
    "satisfaction_score",
    "feature_adoption",
    "data_usage_gb",
    "email_open_rate",
]
CHURN_CATEGORICAL = ["region", "plan", "channel"]
REGIONS = [f"r{i:02d}" for i in range(40)]
PLANS = ["basic", "plus", "pro", "team", "enterprise"]
CHANNELS = ["web", "app", "partner"]
# The sensitive column: not a feature, so the fairness gate judges what the model does to
# groups it cannot see (through the features that differ between them).
AGE_BANDS = ["18-34", "35-54", "55+"]
# The unobserved part of churn and the score's cut: about 10 % churn, and the default model's
# F1 on 10,000 rows is about 0.70 (ROC AUC 0.93), where a noise of 0.1 and a cut of 2.4 made a
# toy of it (F1 0.99, ROC AUC 0.9995; real churn models score 0.6-0.8).
CHURN_NOISE = 1.0
CHURN_CUT = 2.9
# Per-level effects, fixed by their own seed: a region means the same in every table and batch.
REGION_EFFECT = np.random.default_rng(1234).normal(0, 0.3, len(REGIONS))
PLAN_EFFECT = np.array([0.3, 0.1, 0.0, -0.2, -0.4])


def _churn_draws(rows: int, rng: np.random.Generator) -> tuple[dict, np.ndarray, dict]:
    """Every random draw of a churn table, in one fixed order: (complete columns as arrays, with
    the two hidden states `_disengaged` and `_unhappy`; label noise; missing-value masks). Drift
    edits the columns afterwards, so `none` and the drifted batches of one seed share customers.

    The hidden states show in several columns at once, as they do in real churn data (a lapsed
    customer logs in rarely, uses little, opens no mail), so the signal survives a forest's
    random column subsets and the missing values.
    """
    age = rng.choice(len(AGE_BANDS), rows, p=[0.3, 0.4, 0.3])
    plan = rng.choice(len(PLANS), rows, p=[0.35, 0.25, 0.2, 0.12, 0.08])
    channel_p = np.array([[0.4, 0.5, 0.1], [0.5, 0.35, 0.15], [0.6, 0.15, 0.25]])[age]
    channel = (rng.random((rows, 1)) > channel_p.cumsum(axis=1)).sum(axis=1)
    region = rng.integers(0, len(REGIONS), rows)
    disengaged = rng.random(rows) < np.array([0.045, 0.04, 0.055])[age]
    unhappy = rng.random(rows) < 0.05
    tenure = rng.integers(1, 73, rows)
    contract = np.where(rng.random(rows) < 0.45, 0, rng.integers(1, 25, rows))
    monthly = (np.array([25.0, 45, 70, 120, 200])[plan] * rng.lognormal(0, 0.25, rows)).round(2)
    login = np.where(  # heavy right tail
        disengaged, rng.lognormal(3.8, 0.5, rows), rng.lognormal(1.8, 0.8, rows)
    ).round(2)
    adoption = np.where(disengaged, rng.beta(1, 6, rows), rng.beta(3, 3, rows)).round(3)
    cols = {
        "tenure_months": tenure,
        "contract_months_left": contract,
        "monthly_charges": monthly,
        "total_charges": (tenure * monthly * rng.uniform(0.9, 1.1, rows)).round(2),
        "discount_pct": rng.choice(
            [0.0, 5, 10, 15, 20, 30], rows, p=[0.4, 0.2, 0.15, 0.1, 0.1, 0.05]
        ),
        "price_change_pct": (4 * rng.standard_t(3, rows)).round(),  # whole %, heavy tails
        "support_calls_90d": rng.poisson(np.where(unhappy, 6.0, 0.6)),
        "satisfaction_score": np.clip(
            np.where(unhappy, rng.normal(3.0, 1.0, rows), rng.normal(7.6, 1.0, rows)), 1, 10
        ).round(1),
        "days_since_last_login": login,
        "sessions_30d": rng.poisson(np.where(disengaged, 2.0, 18.0)),
        "avg_session_minutes": rng.lognormal(np.where(disengaged, 1.6, 2.5), 0.6).round(2),
        "feature_adoption": adoption,
        "data_usage_gb": rng.lognormal(2.0, 1.0, rows).round(3),
        "devices": 1 + rng.poisson(1.5, rows),
        "seats": np.where(plan >= 3, 5 + rng.poisson(20, rows), 1),
        "payment_failures_12m": rng.poisson(0.3, rows),
        "late_payments_12m": rng.poisson(0.6, rows),
        "outage_minutes_30d": (rng.pareto(2.5, rows) * np.where(unhappy, 60, 20)).round(1),
        "referrals": rng.poisson(0.4, rows),
        "competitor_offers": rng.poisson(np.where(unhappy, 3.0, 0.6)),
        "email_open_rate": np.where(disengaged, rng.beta(1, 8, rows), rng.beta(2, 5, rows)).round(
            3
        ),
        "billing_day": rng.integers(1, 29, rows),
        "marketing_score": rng.normal(50, 15, rows).round(2),  # noise
        "credit_score": np.clip(rng.normal(680, 60, rows), 300, 850).round(0),  # noise
        "region": region,
        "plan": plan,
        "channel": channel,
        "age_band": age,
        "_disengaged": disengaged,
        "_unhappy": unhappy,
    }
    # what no column shows (a move, a new job, a competitor's call): as in real churn, the same
    # customer may or may not leave, so no model separates them (F1 about 0.70, not 0.99)
    noise = rng.normal(0, CHURN_NOISE, rows)
    missing = {c: rng.random(rows) < 0.05 for c in CHURN_MISSING}
    return cols, noise, missing


def _churn_label(cols: dict, noise: np.ndarray, concept: bool = False) -> np.ndarray:
    """The churn rule: a lapsed or an unhappy customer leaves; one out of contract leaves after
    a price rise of more than 12 %, unless the region, the plan and a sine of the billing day
    hold them (near the cut, the interactions decide).

    The drifted concept keeps the inputs' meaning but not their effect: the lapsed and the
    unhappy stay, customers of the team and enterprise plans leave once out of contract, so the
    positives move to where the original rule says no while the features keep their distribution.
    """
    plan, out_of_contract = cols["plan"], cols["contract_months_left"] == 0
    price_rise = cols["price_change_pct"] > 12
    if concept:
        drivers = 3.0 * ((plan >= 3) & out_of_contract) + 1.4 * cols["_unhappy"] + 1.4 * price_rise
    else:
        drivers = (
            3.0 * cols["_disengaged"]
            + 3.0 * cols["_unhappy"]
            + 1.4 * out_of_contract
            + 1.4 * price_rise
        )
    score = (
        drivers
        + 0.25 * np.sin(2 * np.pi * cols["billing_day"] / 28)
        + 0.4 * REGION_EFFECT[cols["region"]]
        + 0.4 * PLAN_EFFECT[plan]
        + noise
    )
    return (score > CHURN_CUT).astype(np.int64)


def _check_strength(strength: float) -> None:
    if not 0 <= strength <= 10:
        raise ValueError(f"strength must be in [0, 10], got {strength}")


def _shift(before: np.ndarray, moved: np.ndarray, strength: float, rng) -> np.ndarray:
    """A categorical column partway to its shifted mix: each row takes its shifted value with
    probability `strength` (all of them from 1 on, with no extra draw, so strength 1 gives the
    batches it always gave)."""
    if strength >= 1:
        return moved
    return np.where(rng.random(len(before)) < strength, moved, before)


def churn_batch(
    rows: int, seed: int, drift: str = "none", first_id: int = 1, strength: float = 1.0
) -> pd.DataFrame:
    """`rows` customers of the churn table, with no drift, covariate drift or concept drift
    (as `fraud_batch`; `none` is exactly `churn_frame(rows, seed, first_id)`).

    - `covariate`: logins lapse (days since the last one x1.6), prices rise by 3 points and the
      channel mix moves towards partners; churn follows the same rule. `strength` scales it
      (0 none, 1 this shift, 2 twice as far), as `fraud_batch`'s.
    - `concept`: the inputs keep their distribution, churn follows another rule
      (`_churn_label`), so drift tests stay quiet while the production model's F1 drops.
    """
    if drift not in DRIFTS:
        raise ValueError(f"drift {drift!r} is unknown (known: {list(DRIFTS)})")
    cols, noise, missing = _churn_draws(rows, np.random.default_rng(seed))
    if drift == "covariate":
        _check_strength(strength)
        rng = np.random.default_rng([seed, DRIFTS.index(drift)])
        cols["days_since_last_login"] = (cols["days_since_last_login"] * 1.6**strength).round(2)
        # whole %, as every price change is: a model never saw 12.5 %
        cols["price_change_pct"] = (cols["price_change_pct"] + 3 * strength).round()
        moved = rng.choice(len(CHANNELS), rows, p=[0.3, 0.3, 0.4])
        cols["channel"] = _shift(cols["channel"], moved, strength, rng)
    churned = _churn_label(cols, noise, concept=drift == "concept")
    df = pd.DataFrame({"customer_id": np.arange(first_id, first_id + rows, dtype=np.int64)})
    for c in CHURN_NUMERIC:
        values = cols[c]
        df[c] = values.astype(np.int64) if values.dtype.kind in "iu" else values.astype(float)
    for c in CHURN_MISSING:  # missing values the imputer has to handle
        df.loc[missing[c], c] = np.nan
    for c, levels in (("region", REGIONS), ("plan", PLANS), ("channel", CHANNELS)):
        df[c] = np.asarray(levels, dtype=object)[cols[c]]
    df["age_band"] = np.asarray(AGE_BANDS, dtype=object)[cols["age_band"]]
    df["churned"] = churned
    return df


def churn_frame(rows: int, seed: int = 42, first_id: int = 1) -> pd.DataFrame:
    """`rows` customers in the bundled churn schema (mlassets/specs/churn.yaml), about 10 %
    churned: two hidden states seen through several columns each, and a gated step (out of
    contract and a price rise) that the region, the plan and the billing day tip near the cut."""
    return churn_batch(rows, seed, "none", first_id)


# The tables the command writes, with their id and label columns.
TABLES = ("fraud", "churn")
ID_COLUMN = {"fraud": "user_id", "churn": "customer_id"}
LABEL_COLUMN = {"fraud": "label", "churn": "churned"}


def table_batch(
    table: str,
    rows: int,
    seed: int,
    drift: str = "none",
    first_id: int = 1,
    start: pd.Timestamp = START,
    strength: float = 1.0,
) -> pd.DataFrame:
    """`fraud_batch` or `churn_batch` by name (`start` dates fraud's rows; churn has no dates)."""
    if table == "fraud":
        return fraud_batch(rows, seed, drift, first_id, start, strength)
    if table == "churn":
        return churn_batch(rows, seed, drift, first_id, strength)
    raise ValueError(f"table {table!r} is unknown (known: {list(TABLES)})")


def batch_seed(seed: int, index: int) -> int:
    """The seed of the `index`-th batch of a run seeded with `seed` (independent streams)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


# A batch of ours or anyone's, in any format the landing folder takes (`data.SUPPORTED_SUFFIXES`).
BATCH_NAME = re.compile(r"batch_(\d+)\.(?:parquet|pq|csv|csv\.gz)", re.IGNORECASE)


def write_batches(
    out: str | Path,
    batches: int,
    rows: int,
    seed: int,
    drift: str = "none",
    first_id: int | None = None,
    start: pd.Timestamp = BATCH_START,
    table: str = "fraud",
    labels_out: str | Path | None = None,
) -> list[Path]:
    """Write `batches` new files batch_NNNN.parquet into the folder `out`, never overwriting one.

    With `labels_out`, each batch lands as production rows do, without its label column, and
    its labels go to `labels_out`/labels_NNNN.csv (id, label): the files a spec's `labels`
    folder takes, to drop in later.

    Numbering continues after the highest batch_NNNN already there, and batch N always takes the
    seed `batch_seed(seed, N)`: writing 2 batches then 1 gives the same files as 3 at once.
    Ids (`user_id`, or the churn table's `customer_id`) start at `first_id`, by default
    `BATCH_FIRST_ID` for batch 1 and never at or below an id already in the folder's batches, so
    landed batches appended to a source stay unique.
    """
    if table not in TABLES:
        raise ValueError(f"table {table!r} is unknown (known: {list(TABLES)})")
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"{folder}: is a file, not a folder for batches")
    existing = _existing_batches(folder)
    last = max(existing, default=0)
    if first_id is None:
        highest = _highest_id(existing.values(), ID_COLUMN[table])
        first_id = max(BATCH_FIRST_ID + last * rows, highest + 1)
    paths = []
    for k, i in enumerate(range(last + 1, last + batches + 1)):
        df = table_batch(table, rows, batch_seed(seed, i), drift, first_id + k * rows, start)
        if labels_out is not None:
            label = LABEL_COLUMN[table]
            write_frame(
                df[[ID_COLUMN[table], label]],
                Path(labels_out) / f"labels_{i:04d}.csv",
                overwrite=False,
            )
            df = df.drop(columns=label)
        paths.append(write_frame(df, folder / f"batch_{i:04d}.parquet", overwrite=False))
    return paths


def _existing_batches(folder: Path) -> dict[int, Path]:
    """The batch_NNNN files already in `folder`, by number."""
    if not folder.is_dir():
        return {}
    found = {}
    for p in folder.iterdir():
        m = BATCH_NAME.fullmatch(p.name)
        if m:
            found[int(m.group(1))] = p
    return found


def _highest_id(paths, column: str = "user_id") -> int:
    """The highest id in `column` of the given Parquet batches (0 when none can tell)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    highest = 0
    for p in paths:
        if p.suffix.lower() not in (".parquet", ".pq"):
            continue
        try:
            ids = pq.read_table(p, columns=[column]).column(column)
            top = pc.max(ids).as_py()
        except Exception:  # not ours, or not readable: its ids cannot clash with what we know
            continue
        if isinstance(top, int):
            highest = max(highest, top)
    return highest


def _encode(df: pd.DataFrame, out: Path) -> bytes:
    """The bytes `write_frame` writes for `df` at `out` (format by suffix)."""
    import io

    if out.suffix == ".csv":
        return df.to_csv(index=False).encode()
    if out.suffix in (".parquet", ".pq"):
        buffer = io.BytesIO()
        df.to_parquet(buffer, index=False)
        return buffer.getvalue()
    raise ValueError(f"{out}: unsupported suffix {out.suffix!r} (use .csv or .parquet)")


def write_frame(df: pd.DataFrame, out: str | Path, overwrite: bool = True) -> Path:
    """Write a frame as Parquet or CSV (by the file's suffix), creating parent folders.

    The file appears whole or not at all (written beside it under a hidden name, then moved in),
    so a sensor watching the folder never reads half a batch. With `overwrite=False` an
    existing file is refused (FileExistsError naming it), even one created meanwhile.
    """
    out = Path(out)
    data = _encode(df, out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    try:
        if overwrite:
            os.replace(tmp, out)
        else:
            try:
                try:
                    os.link(tmp, out)  # atomic, and fails if `out` exists
                except FileExistsError:
                    raise
                except OSError:  # no hard links on this file system: exclusive create
                    with open(out, "xb") as f:
                        f.write(data)
            except FileExistsError:
                raise FileExistsError(f"{out}: already exists; not overwritten") from None
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _holds(path: Path, df: pd.DataFrame) -> bool:
    """Whether the file at `path` already holds exactly `df` (the same bytes, or for Parquet
    the same frame: another pyarrow writes other metadata bytes for the same rows)."""
    if path.read_bytes() == _encode(df, path):
        return True
    if path.suffix not in (".parquet", ".pq"):
        return False
    try:
        return pd.read_parquet(path).equals(df)
    except Exception:
        return False


def main(argv: list[str] | None = None) -> None:
    """Command line entry point: write a synthetic table, or N batches of it into a folder."""
    parser = argparse.ArgumentParser(
        prog="python -m mlassets.synthetic",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--table", choices=TABLES, default="fraud", help="which bundled spec's table to write"
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
        help=f"the first id, user_id or customer_id (default 1; with --batches "
        f"{BATCH_FIRST_ID:,}, or after the highest id in the folder's batches)",
    )
    parser.add_argument(
        "--start",
        type=pd.Timestamp,
        default=None,
        help=f"the first day of the timestamps (default {START.date()}; "
        f"{BATCH_START.date()} with --batches); --table fraud only",
    )
    parser.add_argument(
        "--labels-out",
        default=None,
        help="with --batches: write each batch without its label column, and its labels "
        "(id, label) as labels_NNNN.csv into this folder (a spec's `labels` folder)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace an existing --out file that holds other rows (never a batch)",
    )
    args = parser.parse_args(argv)
    if args.batches < 0 or args.rows < 0:
        parser.error("--rows and --batches cannot be negative")
    if args.batches and args.force:
        parser.error("--force does not apply to --batches: batches are never overwritten")
    if args.labels_out and not args.batches:
        parser.error("--labels-out applies to --batches")
    if args.start is not None and args.table != "fraud":
        parser.error(f"--start applies to --table fraud only: the {args.table} table has no dates")
    if args.batches:
        try:
            paths = write_batches(
                args.out,
                args.batches,
                args.rows,
                args.seed,
                args.drift,
                args.first_id,
                BATCH_START if args.start is None else args.start,
                args.table,
                args.labels_out,
            )
        except FileExistsError as e:
            sys.exit(f"python -m mlassets.synthetic: {e}")
        print(
            f"wrote {len(paths)} {args.table} batch(es) of {args.rows:,} rows ({args.drift} drift) "
            f"to {Path(args.out)}: {', '.join(p.name for p in paths)}"
            + (f"; their labels to {Path(args.labels_out)}" if args.labels_out else "")
        )
        return
    first_id = 1 if args.first_id is None else args.first_id
    start = START if args.start is None else args.start
    # drift "none": exactly fraud_frame / churn_frame
    df = table_batch(args.table, args.rows, args.seed, args.drift, first_id, start)
    out = Path(args.out)
    if out.is_dir():
        sys.exit(
            f"python -m mlassets.synthetic: {out} is a folder (use --batches to write into it)"
        )
    if out.exists() and not args.force:
        _encode(df, out)  # an unsupported suffix is said first
        if _holds(out, df):
            print(f"{out} already holds these {len(df):,} rows: left as is")
            return
        sys.exit(
            f"python -m mlassets.synthetic: {out} already exists and holds other rows; "
            "not overwritten (--force replaces it)"
        )
    try:
        path = write_frame(df, out, overwrite=args.force)
    except FileExistsError as e:  # created meanwhile by someone else
        sys.exit(f"python -m mlassets.synthetic: {e}")
    positive = df[LABEL_COLUMN[args.table]].mean()
    print(f"wrote {len(df):,} rows ({positive:.1%} positive) to {path}")


if __name__ == "__main__":
    main()
