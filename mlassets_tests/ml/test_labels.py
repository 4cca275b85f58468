"""Labels that arrive after their rows: label files joined to landed rows by id."""

import numpy as np
import pandas as pd
import pytest

from mlassets.ml.labels import join_labels, read_labels
from mlassets.ml.landing import list_batches, read_batches
from mlassets.spec import DatasetSpec, SpecError, load_spec
from mlassets.synthetic import fraud_batch, write_frame

pytestmark = pytest.mark.unit


@pytest.fixture
def spec():
    return load_spec()


def landed(tmp_path, spec, *frames):
    """Write `frames` as batch_0001.parquet, ... and read them as monitoring does."""
    for i, df in enumerate(frames, 1):
        write_frame(df, tmp_path / "landing" / f"batch_{i:04d}.parquet")
    rows, read, errors = read_batches(list_batches(str(tmp_path / "landing")), spec, check=True)
    assert errors == {}
    return rows


def test_a_batch_without_its_label_column_is_a_normal_unlabelled_batch(tmp_path, spec):
    rows = landed(tmp_path, spec, fraud_batch(300, 1).drop(columns="label"))
    assert list(rows.columns) == [*spec.columns, "_batch"]
    assert len(rows) == 300 and rows["label"].isna().all()


@pytest.mark.parametrize("table", ["fraud", "churn"])
def test_each_bundled_specs_batch_without_labels_passes_its_checks(tmp_path, table):
    from mlassets.spec import BUNDLED_SPECS
    from mlassets.synthetic import LABEL_COLUMN, table_batch

    spec = load_spec(BUNDLED_SPECS / f"{table}.yaml")
    rows = landed(tmp_path, spec, table_batch(table, 500, 3).drop(columns=LABEL_COLUMN[table]))
    assert len(rows) == 500 and rows[spec.label.column].isna().all()


def test_a_batch_missing_another_column_is_still_refused_by_name(tmp_path, spec):
    write_frame(fraud_batch(300, 1).drop(columns="feature_2"), tmp_path / "l" / "batch_0001.csv")
    _, read, errors = read_batches(list_batches(str(tmp_path / "l")), spec)
    assert read == [] and "missing ['feature_2']" in errors["batch_0001.csv"]


def test_labels_join_by_id_from_csv_and_parquet_files(tmp_path, spec):
    first, second = fraud_batch(400, 1, first_id=1), fraud_batch(400, 2, first_id=1_001)
    rows = landed(tmp_path, spec, first.drop(columns="label"), second.drop(columns="label"))
    truth = pd.concat([first, second], ignore_index=True)[["user_id", "label"]]
    write_frame(truth.iloc[:500], tmp_path / "labels" / "labels_0001.csv")
    # another file, its columns in the other order, ids as Parquet int64
    write_frame(truth.iloc[500:700][["label", "user_id"]], tmp_path / "labels" / "a.parquet")
    files = read_labels(str(tmp_path / "labels"), spec)
    assert files.errors == {} and [f.name for f in files.files] == ["a.parquet", "labels_0001.csv"]

    out, report = join_labels(rows, files, spec)
    assert len(out) == len(rows) and out["user_id"].tolist() == rows["user_id"].tolist()
    assert report.joined == 700 and report.unmatched == 0 and report.conflicts == 0
    got = out["label"].to_numpy()
    assert np.array_equal(got[:700], truth["label"].to_numpy()[:700])
    assert np.isnan(got[700:]).all()  # no label yet for the rest
    assert rows["label"].isna().all()  # the landed rows themselves are left as they were
    assert {f["name"]: f["rows"] for f in report.files} == {
        "a.parquet": 200,
        "labels_0001.csv": 500,
    }


def test_unmatched_duplicate_conflicting_and_ambiguous_ids_are_reported_never_joined_silently(
    tmp_path, spec
):
    batch = fraud_batch(100, 3, first_id=1)
    batch.loc[:49, "label"] = np.nan  # rows 50.. carry their own label
    repeat = fraud_batch(2, 4, first_id=1).drop(columns="label")  # ids 1 and 2 land twice
    rows = landed(tmp_path, spec, batch, repeat)
    folder = tmp_path / "labels"
    write_frame(pd.DataFrame({"user_id": [3, 4, 5, 999], "label": [1, 0, 1, 1]}), folder / "x.csv")
    write_frame(
        pd.DataFrame({"user_id": [4, 5, 1], "label": [0, 0, 1]}), folder / "y.csv"
    )  # 4 again alike, 5 otherwise, 1 is on two rows
    own = int(batch.loc[60, "label"])
    write_frame(
        pd.DataFrame({"user_id": [61, 62], "label": [own, 1 - int(batch.loc[61, "label"])]}),
        folder / "z.csv",
    )
    out, report = join_labels(rows, read_labels(str(folder), spec), spec)

    assert len(out) == 102  # never a duplicated row
    by_id = out[out["_batch"] == "batch_0001.parquet"].set_index("user_id")["label"]
    assert by_id[3] == 1 and by_id[4] == 0  # joined (4 twice alike: used once)
    assert np.isnan(by_id[5])  # two files disagree: left unlabelled
    assert np.isnan(by_id[62])  # a file contradicts the row's own label: left unlabelled
    assert by_id[61] == own  # a file repeating the row's label changes nothing
    assert np.isnan(by_id[1])  # id 1 is on two recent rows: which one is meant?
    assert report.joined == 2 and report.agreed == 1
    assert report.unmatched == 1 and report.unmatched_ids == [999]
    assert report.duplicates == 1 and report.duplicate_ids == [4]
    assert report.conflicts == 2
    text = report.summary()
    assert "user_id 5: 1 (x.csv), 0 (y.csv)" in text
    assert "user_id 62: its row says" in text
    assert "match no recent row" in text and "[999]" in text
    assert "on more than one recent row" in text and report.ambiguous_ids == [1, 2]


def test_a_bad_label_file_is_skipped_by_name_and_the_others_still_join(tmp_path, spec):
    rows = landed(tmp_path, spec, fraud_batch(50, 5, first_id=1).drop(columns="label"))
    folder = tmp_path / "labels"
    write_frame(pd.DataFrame({"user_id": [1, 2], "label": [1, 7]}), folder / "bad_value.csv")
    write_frame(pd.DataFrame({"user_id": [1, None], "label": [1, 0]}), folder / "no_id.csv")
    write_frame(pd.DataFrame({"id": [1], "label": [1]}), folder / "other_columns.csv")
    (folder / "broken.parquet").write_bytes(b"not parquet")
    write_frame(pd.DataFrame({"user_id": [3], "label": [1]}), folder / "good.csv")
    files = read_labels(str(folder), spec)
    errors = files.errors
    assert set(errors) == {"bad_value.csv", "no_id.csv", "other_columns.csv", "broken.parquet"}
    assert (
        "values_allowed on column 'label'" in errors["bad_value.csv"]
        and "[7]" in errors["bad_value.csv"]
    )
    assert "not_null on column 'user_id'" in errors["no_id.csv"]
    assert "missing ['user_id'], unexpected ['id']" in errors["other_columns.csv"]
    assert "cannot be read as parquet" in errors["broken.parquet"]
    assert all(len(e.encode()) <= 1_000 for e in errors.values())
    out, report = join_labels(rows, files, spec)
    assert report.joined == 1 and out.set_index("user_id").loc[3, "label"] == 1
    assert "4 label file(s) skipped" in report.summary()


def test_text_labels_and_text_ids_join(tmp_path):
    spec = DatasetSpec.model_validate(
        {
            "name": "own",
            "source": "t.csv",
            "landing": "landing",
            "labels": "labels",
            "label": {"column": "churned", "positive": "yes"},
            "id": "customer",
            "columns": {
                "customer": {"type": "string", "nullable": False, "unique": True},
                "age": {"type": "float"},
                "churned": {"type": "string", "values": ["yes", "no"]},
            },
            "features": {"numeric": ["age"]},
            "path": tmp_path / "spec.yaml",
        }
    )
    write_frame(
        pd.DataFrame({"customer": ["a1", "b2", "c3"], "age": [30.0, 40.0, 50.0]}),
        tmp_path / "landing" / "batch_0001.csv",
    )
    rows, _, errors = read_batches(list_batches(str(tmp_path / "landing")), spec, check=True)
    assert errors == {} and rows["churned"].isna().all()
    write_frame(
        pd.DataFrame({"customer": ["b2", "a1"], "churned": ["yes", "no"]}),
        tmp_path / "labels" / "l.csv",
    )
    out, report = join_labels(rows, read_labels(str(tmp_path / "labels"), spec), spec)
    assert out["churned"].tolist()[:2] == ["no", "yes"] and pd.isna(out["churned"].iloc[2])
    assert report.joined == 2


def test_a_labels_folder_needs_an_id_and_its_own_folder(tmp_path):
    text = load_spec().path.read_text()
    no_id = text.replace("id: user_id\n", "")
    (tmp_path / "no_id.yaml").write_text(no_id)
    with pytest.raises(SpecError, match=r"labels: label files join landed rows by id"):
        load_spec(tmp_path / "no_id.yaml")
    same = text.replace("labels: data/labels ", "labels: data/landing ")
    (tmp_path / "same.yaml").write_text(same)
    with pytest.raises(SpecError, match=r"labels: 'data/landing' is the landing folder"):
        load_spec(tmp_path / "same.yaml")
    outside = text.replace("labels: data/labels ", "labels: ../elsewhere ")
    (tmp_path / "outside.yaml").write_text(outside)
    spec = load_spec(tmp_path / "outside.yaml")
    with pytest.raises(SpecError, match=r"`labels` '\.\./elsewhere' leads to"):
        spec.resolve(spec.labels)
