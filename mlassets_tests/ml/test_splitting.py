"""Seeded, stratified or time-ordered splits, and the check that catches an overlap."""

import pandas as pd
import pytest

from mlassets.ml.data import target
from mlassets.ml.splitting import Splits, check_splits, split

pytestmark = pytest.mark.unit


def ids(splits: Splits) -> dict[str, list[int]]:
    return {
        "train": splits.train["user_id"].tolist(),
        "validation": splits.validation["user_id"].tolist(),
        "test": splits.test["user_id"].tolist(),
    }


def test_the_same_seed_gives_the_same_split(raw, spec):
    y = target(raw, spec)
    assert ids(split(raw, y, seed=3)) == ids(split(raw, y, seed=3))
    assert ids(split(raw, y, seed=3))["test"] != ids(split(raw, y, seed=4))["test"]


def test_splits_are_disjoint_cover_every_row_and_have_the_asked_sizes(raw, spec):
    y = target(raw, spec)
    parts = ids(split(raw, y, test_fraction=0.2, validation_fraction=0.1, seed=1))
    train, val, test = set(parts["train"]), set(parts["validation"]), set(parts["test"])
    assert not (train & val) and not (train & test) and not (val & test)
    assert train | val | test == set(raw["user_id"])
    assert len(test) == 400 and len(val) == 200 and len(train) == 1400


def test_split_keeps_rows_intact_and_in_file_order(raw, spec):
    s = split(raw, target(raw, spec), seed=2)
    for part in (s.train, s.validation, s.test):
        assert part.index.is_monotonic_increasing
        pd.testing.assert_frame_equal(part, raw.loc[part.index])


def test_stratified_splits_keep_the_positive_rate(raw, spec):
    y = target(raw, spec)
    s = split(raw, y, seed=5)
    overall = y.mean()
    for part in (s.train, s.validation, s.test):
        assert abs(target(part, spec).mean() - overall) < 0.01


def test_unstratified_split_is_still_seeded_and_disjoint(raw, spec):
    y = target(raw, spec)
    a, b = split(raw, y, stratify=False, seed=8), split(raw, y, stratify=False, seed=8)
    assert ids(a) == ids(b)
    assert check_splits(a, lambda d: target(d, spec), "user_id")["disjoint"]


def test_no_validation_set_when_its_fraction_is_zero(raw, spec):
    s = split(raw, target(raw, spec), test_fraction=0.25, validation_fraction=0.0)
    assert len(s.validation) == 0 and list(s.validation.columns) == list(raw.columns)
    assert len(s.test) == 500 and len(s.train) == 1500


def test_time_ordered_split_puts_the_newest_rows_in_test(raw, spec):
    shuffled = raw.sample(frac=1.0, random_state=0)
    s = split(
        shuffled,
        target(shuffled, spec),
        test_fraction=0.2,
        validation_fraction=0.1,
        time_column="timestamp",
    )
    assert (len(s.train), len(s.validation), len(s.test)) == (1400, 200, 400)
    assert s.train["timestamp"].max() <= s.validation["timestamp"].min()
    assert s.validation["timestamp"].max() <= s.test["timestamp"].min()
    newest = set(raw.nlargest(400, "timestamp")["user_id"])
    assert set(s.test["user_id"]) == newest


@pytest.mark.parametrize(
    ("test_fraction", "validation_fraction"),
    [(0.0, 0.1), (1.0, 0.0), (-0.2, 0.1), (0.2, -0.1), (0.2, 1.0), (0.5, 0.5), (0.7, 0.4)],
)
def test_bad_fractions_raise(raw, spec, test_fraction, validation_fraction):
    with pytest.raises(ValueError, match="fraction"):
        split(
            raw,
            target(raw, spec),
            test_fraction=test_fraction,
            validation_fraction=validation_fraction,
        )


def test_check_splits_passes_a_good_split(raw, spec):
    s = split(raw, target(raw, spec), seed=1)
    report = check_splits(s, lambda d: target(d, spec), "user_id")
    assert report["disjoint"] and report["stratified"]
    assert report["overlaps"] == {"train&validation": 0, "train&test": 0, "validation&test": 0}
    assert report["rows"] == {"train": 1400, "validation": 200, "test": 400}
    assert report["max_rate_gap"] <= 0.02
    assert set(report["positive_rates"]) == {"train", "validation", "test"}


def test_check_splits_detects_an_overlap_by_id(raw, spec):
    s = split(raw, target(raw, spec), seed=1)
    leaky = Splits(pd.concat([s.train, s.test.head(3)]), s.validation, s.test)
    report = check_splits(leaky, lambda d: target(d, spec), "user_id")
    assert not report["disjoint"]
    assert report["overlaps"]["train&test"] == 3
    assert report["overlaps"]["train&validation"] == 0


def test_check_splits_detects_an_overlap_by_index_without_an_id(raw, spec):
    s = split(raw.drop(columns="user_id"), target(raw, spec), seed=1)
    leaky = Splits(s.train, pd.concat([s.validation, s.test.head(2)]), s.test)
    report = check_splits(leaky, lambda d: target(d, spec), None)
    assert report["overlaps"]["validation&test"] == 2
    assert not report["disjoint"]


def test_check_splits_flags_a_positive_rate_gap(raw, spec):
    y = target(raw, spec)
    positives, negatives = raw[y == 1], raw[y == 0]
    skewed = Splits(
        pd.concat([negatives.iloc[:1000], positives]),
        negatives.iloc[1000:1200],
        negatives.iloc[1200:],
    )
    report = check_splits(skewed, lambda d: target(d, spec), "user_id")
    assert report["disjoint"]
    assert not report["stratified"]
    assert report["positive_rates"]["test"] == 0.0
    assert report["max_rate_gap"] > 0.02


def test_check_splits_with_an_empty_validation_set(raw, spec):
    s = split(raw, target(raw, spec), validation_fraction=0.0)
    report = check_splits(s, lambda d: target(d, spec), "user_id")
    assert report["positive_rates"]["validation"] is None
    assert report["rows"]["validation"] == 0 and report["disjoint"]
