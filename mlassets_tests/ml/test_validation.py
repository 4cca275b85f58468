"""The Great Expectations suite generated from the spec, run on real frames."""

import numpy as np
import pytest

from mlassets.ml.validation import (
    BATCH_CHECKS,
    CHECKS,
    PANDAS_CHECKS,
    build_suite,
    by_check,
    min_rows_per_class,
    validate,
)
from mlassets.synthetic import fraud_frame

pytestmark = pytest.mark.unit


def failures(outcomes, check: str):
    return [o for o in by_check(outcomes)[check] if not o.success]


def failed_checks(outcomes) -> set[str]:
    return {o.check for o in outcomes if not o.success}


def test_the_suite_tags_every_expectation_with_a_known_check(spec):
    suite = build_suite(spec)
    checks = [e.meta["check"] for e in suite.expectations]
    assert set(checks) == set(CHECKS) - set(PANDAS_CHECKS)
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
    # the third label value breaks the allowed set and the binary label alike
    assert failed_checks(dirty) == {
        "not_null",
        "unique",
        "values_in_range",
        "values_allowed",
        "label_classes",
    }


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


# -- declared types, finiteness, empty features, label classes ----------------------------------


def own_spec(spec, **changes):
    """The bundled spec with some keys replaced (columns merged by name)."""
    data = spec.model_dump()
    columns = data["columns"]
    for name, col in changes.pop("columns", {}).items():
        columns[name] = {**columns[name], **col}
    return type(spec).model_validate({**data, **changes, "columns": columns})


def test_strings_in_an_integer_column_fail_types_match_spec_with_the_strings(spec):
    df = fraud_frame(1200, seed=3)
    df["total_purchases"] = df["total_purchases"].astype(object)
    df.loc[[5, 9], "total_purchases"] = ["seven", "lots"]
    outcomes = validate(df, spec)
    (failed,) = failures(outcomes, "types_match_spec")
    assert failed.column == "total_purchases"
    assert failed.unexpected_count == 2 and sorted(failed.sample) == ["lots", "seven"]
    assert "'total_purchases'" in failed.describe() and "seven" in failed.describe()
    # the range rule is not run on a column of the wrong type: one clear failure, not two
    assert not failures(outcomes, "values_in_range")


def test_fractions_in_an_integer_column_fail_but_a_missing_value_does_not(spec):
    df = fraud_frame(1200, seed=3)
    df["total_purchases"] = df["total_purchases"].astype("float64")
    df.loc[3, "total_purchases"] = np.nan  # read from CSV, an integer column with a gap is float
    assert not failures(validate(df, spec), "types_match_spec")
    df.loc[4, "total_purchases"] = 2.5
    (failed,) = failures(validate(df, spec), "types_match_spec")
    assert failed.sample == [2.5] and failed.observed == "float64"


def test_infinity_fails_finite_values_unless_the_spec_allows_it(spec):
    df = fraud_frame(1200, seed=3)
    df.loc[[1, 2], "feature_2"] = [np.inf, -np.inf]  # feature_2 has a min and no max
    (failed,) = failures(validate(df, spec), "finite_values")
    assert failed.column == "feature_2" and failed.unexpected_count == 2
    assert "inf" in failed.describe()
    relaxed = own_spec(spec, columns={"feature_2": {"allow_infinite": True, "min": None}})
    assert not failures(validate(df, relaxed), "finite_values")


def test_an_entirely_null_feature_fails_features_not_empty(spec):
    df = fraud_frame(1200, seed=3)
    df["feature_1"] = np.nan
    outcomes = validate(df, spec)
    (failed,) = failures(outcomes, "features_not_empty")
    assert failed.column == "feature_1"
    assert failed_checks(outcomes) == {"features_not_empty"}


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda df: df.assign(label=0), "there is no negative class"),  # one class, positive absent
        (lambda df: df.assign(label=1), "no negative class"),
        (lambda df: df.head(8), "fewer than"),
    ],
    ids=["only_negatives", "only_positives", "eight_rows"],
)
def test_a_label_without_two_usable_classes_fails_label_classes(spec, change, says):
    relaxed = own_spec(spec, min_rows=1)
    (failed,) = failures(validate(change(fraud_frame(1200, seed=3)), relaxed), "label_classes")
    assert failed.column == "label"
    assert says in failed.describe() or "absent" in failed.describe()
    assert "classes seen" in failed.describe()


def test_a_mistyped_positive_value_is_named_with_a_suggestion(spec):
    df = fraud_frame(1200, seed=3)
    df["label"] = np.where(df["label"] == 1, "malignant", "benign")
    wrong = own_spec(
        spec,
        label={"column": "label", "positive": "Malignant"},
        columns={"label": {"type": "string", "values": None}},
    )
    (failed,) = failures(validate(df, wrong), "label_classes")
    text = failed.describe()
    assert "'Malignant' (label.positive) is absent" in text
    assert "did you mean 'malignant'?" in text
    assert "besides the positive" not in text  # 'malignant' is the positive, misspelt


def test_a_third_label_class_fails_even_without_a_values_rule(spec):
    df = fraud_frame(1200, seed=3)
    df.loc[:20, "label"] = 2
    loose = own_spec(spec, columns={"label": {"values": None}})
    outcomes = validate(df, loose)
    (failed,) = failures(outcomes, "label_classes")
    assert "2 values besides the positive one" in failed.describe()
    assert failed_checks(outcomes) == {"label_classes"}


def test_min_rows_per_class_follows_the_split_and_the_folds():
    from mlassets.ml.defaults import SplitSettings, TrainingSettings

    assert min_rows_per_class() == 10  # 1 / validation_fraction 0.1
    assert min_rows_per_class(training=TrainingSettings(cv_folds=10)) == 15  # 10 / 0.7
    assert min_rows_per_class(SplitSettings(validation_fraction=0.0)) == 7  # 5 / 0.8
    assert min_rows_per_class(training=TrainingSettings(strategy="fixed")) == 10  # no folds


def test_numbers_held_as_objects_are_numbers(spec):
    from decimal import Decimal

    df = fraud_frame(1200, seed=3)
    df["feature_2"] = [Decimal(str(v)) for v in df["feature_2"]]  # Parquet decimal128
    assert not failures(validate(df, spec), "types_match_spec")


@pytest.mark.parametrize("cv_folds", [3, 5, 10])
def test_that_many_rows_per_class_are_enough_for_the_real_split_and_folds(cv_folds):
    import pandas as pd
    from sklearn.model_selection import StratifiedKFold

    from mlassets.ml.defaults import TrainingSettings
    from mlassets.ml.splitting import split

    n = min_rows_per_class(training=TrainingSettings(cv_folds=cv_folds))
    df = pd.DataFrame({"x": range(2 * n), "y": [0, 1] * n})
    parts = split(df, df["y"])
    assert set(parts.validation["y"]) == set(parts.test["y"]) == {0, 1}
    folds = StratifiedKFold(cv_folds).split(parts.train, parts.train["y"])
    assert len(list(folds)) == cv_folds  # sklearn raises when a class has fewer rows than folds


def test_a_batch_is_judged_without_the_row_count_and_label_rules(spec):
    df = fraud_frame(50, seed=3).assign(label=0)  # few rows, one class: fine for a batch
    outcomes = validate(df, spec, batch=True)
    assert {o.check for o in outcomes} <= set(BATCH_CHECKS)
    assert all(o.success for o in outcomes), [o.describe() for o in outcomes if not o.success]
    df.loc[0, "category"] = "toys"
    (failed,) = [o for o in validate(df, spec, batch=True) if not o.success]
    assert failed.check == "values_allowed" and failed.sample == ["toys"]


def test_long_values_are_cut_in_samples_and_descriptions(spec):
    from mlassets.ml.bounded import MESSAGE_BYTES, VALUE_BYTES

    df = fraud_frame(1200, seed=3)
    df.loc[:2, "category"] = "x" * 5_000_000
    (failed,) = failures(validate(df, spec), "values_allowed")
    assert all(len(str(v).encode()) <= VALUE_BYTES for v in failed.sample)
    assert "cut" in str(failed.sample[0])
    assert len(failed.describe().encode()) <= MESSAGE_BYTES
