"""The Great Expectations suite generated from the spec, run on real frames."""

import numpy as np
import pytest

from mlassets.ml.validation import CHECKS, build_suite, by_check, validate
from mlassets.synthetic import fraud_frame


def failures(outcomes, check: str):
    return [o for o in by_check(outcomes)[check] if not o.success]


def failed_checks(outcomes) -> set[str]:
    return {o.check for o in outcomes if not o.success}


def test_the_suite_tags_every_expectation_with_a_known_check(spec):
    suite = build_suite(spec)
    checks = [e.meta["check"] for e in suite.expectations]
    assert set(checks) == set(CHECKS)
    assert checks.count("columns_match_spec") == 1 and checks.count("min_row_count") == 1
    in_range = {e.column for e in suite.expectations if e.meta["check"] == "values_in_range"}
    assert in_range == {"feature_1", "feature_2", "total_purchases"}
    not_null = {e.column for e in suite.expectations if e.meta["check"] == "not_null"}
    assert not_null == {"user_id", "timestamp", "signup_date", "label"}


@pytest.fixture(scope="module")
def clean(spec):
    return validate(fraud_frame(1200, seed=3), spec)


def test_a_clean_synthetic_frame_passes_every_check(clean):
    grouped = by_check(clean)
    assert set(grouped) == set(CHECKS)
    for check in CHECKS:
        assert grouped[check], f"no expectation for {check}"
        assert all(o.success for o in grouped[check]), [o.describe() for o in grouped[check]]
    assert all(o.error is None for o in clean)


@pytest.fixture(scope="module")
def dirty(spec):
    """One frame with one defect per check, in different rows and columns."""
    df = fraud_frame(1200, seed=3)
    df["user_id"] = df["user_id"].astype("float64")
    df.loc[0, "user_id"] = np.nan  # not_null
    df.loc[2, "user_id"] = df.loc[1, "user_id"]  # unique
    df.loc[3, "feature_1"] = 150.5  # values_in_range
    df.loc[4, "label"] = 2  # values_allowed
    return validate(df, spec)


def test_a_null_id_fails_not_null_naming_the_column(dirty):
    failed = failures(dirty, "not_null")
    assert [o.column for o in failed] == ["user_id"]
    assert failed[0].unexpected_count == 1
    assert "'user_id'" in failed[0].describe()


def test_a_duplicate_id_fails_unique(dirty):
    failed = failures(dirty, "unique")
    assert [o.column for o in failed] == ["user_id"]
    assert failed[0].unexpected_count == 2
    assert failed[0].sample == [2.0, 2.0]


def test_an_out_of_range_value_fails_values_in_range_with_the_value_in_the_sample(dirty):
    failed = failures(dirty, "values_in_range")
    assert [o.column for o in failed] == ["feature_1"]
    assert failed[0].sample == [150.5]
    assert "150.5" in failed[0].describe()


def test_an_unknown_label_fails_values_allowed(dirty):
    failed = failures(dirty, "values_allowed")
    assert [o.column for o in failed] == ["label"]
    assert failed[0].sample == [2]


def test_the_defects_fail_only_their_own_checks(dirty):
    assert failed_checks(dirty) == {"not_null", "unique", "values_in_range", "values_allowed"}


def test_a_missing_column_fails_columns_match_spec_listing_it(spec):
    df = fraud_frame(1200, seed=3).drop(columns="feature_2")
    outcomes = validate(df, spec)
    (failed,) = failures(outcomes, "columns_match_spec")
    assert failed.observed["missing"] == ["feature_2"]
    assert failed.observed["unexpected"] == []
    assert "feature_2" not in failed.observed["observed_order"]
    assert "feature_2" in failed.describe()


def test_an_extra_or_reordered_column_fails_columns_match_spec(spec):
    df = fraud_frame(1200, seed=3)
    df["note"] = "x"
    (failed,) = failures(validate(df, spec), "columns_match_spec")
    assert failed.observed["missing"] == [] and failed.observed["unexpected"] == ["note"]
    swapped = fraud_frame(1200, seed=3)
    swapped = swapped[["timestamp", "user_id", *swapped.columns[2:]]]
    (failed,) = failures(validate(swapped, spec), "columns_match_spec")
    assert failed.observed["observed_order"][:2] == ["timestamp", "user_id"]


def test_too_few_rows_fails_min_row_count(spec):
    outcomes = validate(fraud_frame(spec.min_rows - 1, seed=3), spec)
    (failed,) = failures(outcomes, "min_row_count")
    assert failed.observed == spec.min_rows - 1
    assert failed_checks(outcomes) == {"min_row_count"}
    assert f"observed {spec.min_rows - 1}" in failed.describe()


def test_validation_does_not_keep_the_frame_alive(spec):
    # Great Expectations' module-level context held the validated frame (the whole raw table)
    # for the life of the process
    import gc
    import weakref

    df = fraud_frame(2000, seed=4)
    ref = weakref.ref(df)
    assert all(o.success for o in validate(df, spec))
    del df
    gc.collect()
    assert ref() is None
    assert all(o.success for o in validate(fraud_frame(2000, seed=5), spec))  # and again
