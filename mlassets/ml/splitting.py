"""Seeded splits into train, validation and test sets, and their sanity check."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Splits:
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame


def split(
    df: pd.DataFrame,
    y: pd.Series,
    *,
    test_fraction: float = 0.2,
    validation_fraction: float = 0.1,
    seed: int = 42,
    stratify: bool = True,
    time_column: str | None = None,
) -> Splits:
    """Split rows into train/validation/test.

    Random and stratified on `y` by default (the seed's `train_test_split(..., stratify=y)`); with
    `time_column` the newest rows become the test set and those just before them validation, which
    is how a deployed model meets data: from the future.
    """
    from sklearn.model_selection import train_test_split

    if not (0 < test_fraction < 1 and 0 <= validation_fraction < 1):
        raise ValueError(
            f"split fractions must lie in (0, 1): test={test_fraction}, "
            f"validation={validation_fraction}"
        )
    if test_fraction + validation_fraction >= 1:
        raise ValueError(
            f"test_fraction ({test_fraction}) + validation_fraction ({validation_fraction}) "
            "leave no training rows"
        )
    if time_column:
        order = np.argsort(df[time_column].to_numpy(), kind="stable")
        n = len(df)
        n_test, n_val = round(n * test_fraction), round(n * validation_fraction)
        train_idx = order[: n - n_test - n_val]
        val_idx = order[n - n_test - n_val : n - n_test]
        test_idx = order[n - n_test :]
        return Splits(df.iloc[train_idx], df.iloc[val_idx], df.iloc[test_idx])
    positions = np.arange(len(df))
    rest, test_idx = train_test_split(
        positions, test_size=test_fraction, random_state=seed, stratify=y if stratify else None
    )
    if validation_fraction == 0:
        return Splits(df.iloc[np.sort(rest)], df.iloc[[]], df.iloc[np.sort(test_idx)])
    train_idx, val_idx = train_test_split(
        rest,
        test_size=validation_fraction / (1 - test_fraction),
        random_state=seed,
        stratify=y.iloc[rest] if stratify else None,
    )
    return Splits(
        df.iloc[np.sort(train_idx)], df.iloc[np.sort(val_idx)], df.iloc[np.sort(test_idx)]
    )


def check_splits(splits: Splits, y_of, id_column: str | None, max_rate_gap: float = 0.02) -> dict:
    """Whether the splits share no rows and keep the positive rate (for stratified splits).

    Rows are identified by `id_column`, or by the row index when the spec has no id. `y_of` maps
    a split frame to its 0/1 target. Returns the overlaps, per-split rates and a verdict.
    """
    parts = {"train": splits.train, "validation": splits.validation, "test": splits.test}
    # pandas indexes, not Python sets: a set of 700,000 ids holds 700,000 int objects (~60 MiB);
    # an index shares the column's array and intersects with a hash table or a merge
    keys = {
        name: pd.Index(part[id_column] if id_column else part.index, copy=False)
        for name, part in parts.items()
    }
    overlaps = {
        f"{a}&{b}": len(keys[a].intersection(keys[b]))
        for a, b in (("train", "validation"), ("train", "test"), ("validation", "test"))
    }
    rates = {name: float(y_of(part).mean()) if len(part) else None for name, part in parts.items()}
    known = [r for r in rates.values() if r is not None]
    gap = max(known) - min(known) if known else 0.0
    return {
        "overlaps": overlaps,
        "positive_rates": rates,
        "rows": {name: len(part) for name, part in parts.items()},
        "max_rate_gap": gap,
        "disjoint": not any(overlaps.values()),
        "stratified": gap <= max_rate_gap,
    }
