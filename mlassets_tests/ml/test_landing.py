"""Landed batches judged one by one (`mlassets.ml.landing`): real files, real Great Expectations.

A batch that cannot be read, has other columns, or breaks the spec's per-batch rules is skipped
by name with a bounded reason; the others are used. Grouped validation must give exactly the
verdicts each batch gets alone.
"""

import json

import numpy as np
import pandas as pd
import pytest

from mlassets.ml import landing
from mlassets.ml.bounded import METADATA_BYTES
from mlassets.ml.data import DataError
from mlassets.ml.landing import (
    REASON_BYTES,
    check_batch,
    describe_skipped,
    judge_batches,
    list_batches,
    read_batches,
    skipped_records,
)
from mlassets.synthetic import BATCH_FIRST_ID, fraud_batch, write_frame

pytestmark = pytest.mark.integration

ROWS = 300


def good(i: int) -> pd.DataFrame:
    """A clean batch whose ids follow batch i-1's."""
    return fraud_batch(ROWS, seed=100 + i, first_id=BATCH_FIRST_ID + i * ROWS)


def text_in_numeric(i: int) -> pd.DataFrame:
    df = good(i)
    df["feature_1"] = df["feature_1"].astype(object)
    df.loc[[3, 8], "feature_1"] = ["abc", "x" * 5_000]
    return df


def feature_empty(i: int) -> pd.DataFrame:
    return good(i).assign(feature_2=np.nan)


def unknown_category(i: int) -> pd.DataFrame:
    df = good(i)
    df.loc[[1, 2], "category"] = "toys"
    return df


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A landing folder: good batches around one of each kind of bad batch."""
    root = tmp_path_factory.mktemp("landing")
    write_frame(good(1), root / "batch_0001.parquet")
    write_frame(text_in_numeric(2), root / "batch_0002.csv")  # CSV: Parquet cannot mix types
    write_frame(feature_empty(3), root / "batch_0003.parquet")
    write_frame(unknown_category(4), root / "batch_0004.parquet")
    write_frame(good(5).drop(columns=["category"]), root / "batch_0005.parquet")
    write_frame(good(6).assign(label=np.nan), root / "batch_0006.parquet")  # no labels yet
    write_frame(good(7), root / "batch_0007.parquet")
    (root / "batch_0008.csv").write_text('user_id,"broken\n1,2,3')
    return root


def test_each_bad_batch_is_skipped_by_name_with_its_reason(folder, spec):
    landing._VERDICTS.clear()
    rows, used, errors = read_batches(list_batches(str(folder)), spec, check=True)
    assert [b.name for b in used] == [
        "batch_0001.parquet",
        "batch_0006.parquet",
        "batch_0007.parquet",
    ]
    assert sorted(set(rows["_batch"])) == [b.name for b in used]
    assert len(rows) == 3 * ROWS
    # statistics see numbers, not text mixed in from a bad batch
    assert pd.api.types.is_float_dtype(rows["feature_1"])
    assert list(errors) == [
        "batch_0002.csv",
        "batch_0003.parquet",
        "batch_0004.parquet",
        "batch_0005.parquet",
        "batch_0008.csv",
    ]
    text = errors["batch_0002.csv"]
    assert "types_match_spec" in text and "'feature_1'" in text and "'abc'" in text
    assert "[cut: 5,000 bytes" in text and len(text.encode()) <= REASON_BYTES
    assert errors["batch_0003.parquet"] == (
        "fails features_not_empty on column 'feature_2': every value is missing"
    )
    category = errors["batch_0004.parquet"]
    assert "values_allowed" in category and "'category'" in category
    assert "['toys']" in category  # each offending value once
    assert "columns differ from the spec" in errors["batch_0005.parquet"]
    assert "missing ['category']" in errors["batch_0005.parquet"]
    assert "batch_0008.csv" in errors["batch_0008.csv"]


def test_grouped_verdicts_are_each_batch_own(folder, spec):
    """Validating batches together must never pass a batch that fails alone, nor fail one that
    passes alone: here an empty feature hides among full ones, and two batches share ids."""
    frames = {
        "a.parquet": good(1),
        "b.parquet": feature_empty(2),  # passes in a union, fails alone
        "c.parquet": unknown_category(3),
        "d.parquet": good(4),
        "e.parquet": good(4),  # the same ids as d: a union fails `unique`, each alone passes
    }
    loaded = [
        (landing.Batch(n, n, 0, f"digest-{n}-{id(df)}"), df.copy()) for n, df in frames.items()
    ]
    landing._VERDICTS.clear()
    grouped = judge_batches(loaded, spec)
    alone = {b.name: check_batch(df, spec) for b, df in loaded}
    assert grouped == alone
    assert sorted(n for n, why in grouped.items() if why) == ["b.parquet", "c.parquet"]
    # each verdict is kept by content and spec: the next tick does not validate these again
    from mlassets.ml.provenance import spec_digest

    assert all((b.digest, spec_digest(spec)) in landing._VERDICTS for b, _ in loaded)
    assert judge_batches(loaded, spec) == grouped


@pytest.mark.unit
def test_a_landing_path_that_is_a_file_is_an_error_naming_it(tmp_path):
    path = tmp_path / "landing"
    path.write_text("not a folder")
    with pytest.raises(DataError, match=r"landing .*landing: is not a folder"):
        list_batches(str(path))
    assert list_batches(str(tmp_path / "absent")) == []  # nothing landed yet is not an error


@pytest.mark.unit
def test_skipped_batches_are_bounded_in_messages_and_metadata():
    skipped = {f"batch_{i:05d}.parquet": "fails values_allowed " + "x" * 900 for i in range(1000)}
    text = describe_skipped(skipped)
    assert text.count("skipped batch ") == 5 and text.endswith("and 995 more skipped batch(es)")
    rows = skipped_records(skipped)
    assert len(json.dumps(rows).encode()) <= METADATA_BYTES
    assert rows[0] == {"batch": "batch_00000.parquet", "reason": skipped["batch_00000.parquet"]}
    assert rows[-1]["reason"].endswith("more not shown")
    shown = len(rows) - 1
    assert rows[-1]["reason"] == f"{1000 - shown} more not shown"
    assert skipped_records({}) == [] and describe_skipped({}) == ""
