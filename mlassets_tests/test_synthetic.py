"""The synthetic data generator: deterministic bytes, a fraud rate in range, a working command."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import mlassets.settings  # noqa: F401
from mlassets.spec import BUNDLED_SPECS, DEFAULT_SPEC, load_spec
from mlassets.synthetic import (
    BATCH_FIRST_ID,
    CATEGORIES,
    churn_batch,
    churn_frame,
    fraud_frame,
    write_frame,
)

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_the_same_seed_writes_the_same_bytes(tmp_path, suffix):
    a = write_frame(fraud_frame(500, seed=11), tmp_path / f"a{suffix}")
    b = write_frame(fraud_frame(500, seed=11), tmp_path / f"b{suffix}")
    c = write_frame(fraud_frame(500, seed=12), tmp_path / f"c{suffix}")
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_write_frame_creates_folders_and_rejects_other_suffixes(tmp_path):
    df = fraud_frame(10, seed=1)
    out = write_frame(df, tmp_path / "deep" / "er" / "t.pq")
    assert out.exists()
    pd.testing.assert_frame_equal(pd.read_parquet(out), df)
    with pytest.raises(ValueError, match=r"\.json"):
        write_frame(df, tmp_path / "t.json")
    assert not (tmp_path / "t.json").exists()


@pytest.mark.parametrize("seed", [1, 42, 2024])
def test_positive_rate_is_between_3_and_8_percent(seed):
    rate = fraud_frame(20_000, seed=seed)["label"].mean()
    assert 0.03 <= rate <= 0.08


def test_frame_matches_the_bundled_spec():
    spec = load_spec(DEFAULT_SPEC)
    df = fraud_frame(3000, seed=5, first_id=100)
    assert list(df.columns) == list(spec.columns)
    assert df["user_id"].tolist() == list(range(100, 3100))
    assert df["feature_1"].between(0, 100).all()
    assert (df["feature_2"] >= 0).all() and (df["total_purchases"] >= 0).all()
    assert set(df["category"]) <= set(CATEGORIES)
    assert set(df["label"]) == {0, 1}
    assert (df["signup_date"] <= df["timestamp"]).all()
    assert pd.api.types.is_datetime64_any_dtype(df["timestamp"])
    assert df.notna().all().all()


@pytest.mark.e2e
def test_cli_writes_the_same_table_as_the_function(tmp_path):
    out = tmp_path / "out" / "t.parquet"
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "GX_ANALYTICS_ENABLED": "false"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlassets.synthetic",
            "--rows",
            "300",
            "--seed",
            "9",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "wrote 300 rows" in proc.stdout and str(out) in proc.stdout
    expected = write_frame(fraud_frame(300, seed=9), tmp_path / "expected.parquet")
    assert out.read_bytes() == expected.read_bytes()


@pytest.mark.e2e
def test_cli_rejects_an_unsupported_suffix(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlassets.synthetic",
            "--rows",
            "5",
            "--out",
            str(tmp_path / "t.txt"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "unsupported suffix" in proc.stderr
    assert not (tmp_path / "t.txt").exists()


# --- nothing is overwritten -----------------------------------------------------------------------


def _batches(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_writing_batches_twice_keeps_the_first_files_and_continues_the_numbering(tmp_path):
    from mlassets.synthetic import main

    landing = tmp_path / "landing"
    main(["--rows", "200", "--seed", "5", "--batches", "2", "--out", str(landing)])
    first = _batches(landing)
    assert list(first) == ["batch_0001.parquet", "batch_0002.parquet"]

    main(
        [
            "--rows",
            "200",
            "--seed",
            "5",
            "--batches",
            "1",
            "--drift",
            "covariate",
            "--out",
            str(landing),
        ]
    )
    after = _batches(landing)
    assert list(after) == ["batch_0001.parquet", "batch_0002.parquet", "batch_0003.parquet"]
    assert {n: after[n] for n in first} == first  # byte-identical: a trained-on batch stays
    ids = pd.concat(pd.read_parquet(landing / n) for n in after)["user_id"]
    assert ids.is_unique and ids.min() == 1_000_000_001 and ids.max() == 1_000_000_600

    # 2 then 1 batches write what 3 at once write (same seed, same drift): numbering is content
    once = tmp_path / "once"
    main(["--rows", "200", "--seed", "5", "--batches", "2", "--out", str(once)])
    main(["--rows", "200", "--seed", "5", "--batches", "1", "--out", str(once)])
    at_once = tmp_path / "at_once"
    main(["--rows", "200", "--seed", "5", "--batches", "3", "--out", str(at_once)])
    assert _batches(once) == _batches(at_once)


def test_batches_continue_after_foreign_files_and_ids(tmp_path):
    """A folder holding someone's batch_0007.csv.gz and larger ids: the next is batch_0008, with
    ids above any already landed."""
    from mlassets.synthetic import write_batches

    landing = tmp_path / "landing"
    write_frame(fraud_frame(50, seed=1, first_id=5_000_000_000), landing / "batch_0005.parquet")
    (landing / "batch_0007.csv.gz").write_bytes(b"not ours")
    (landing / "notes.txt").write_text("left alone\n")
    before = _batches(landing)
    paths = write_batches(landing, 2, 100, seed=3)
    assert [p.name for p in paths] == ["batch_0008.parquet", "batch_0009.parquet"]
    assert {n: b for n, b in _batches(landing).items() if n in before} == before
    ids = pd.concat(pd.read_parquet(p) for p in paths)["user_id"]
    assert ids.min() == 5_000_000_050 and ids.is_unique


def test_write_frame_refuses_an_existing_file_when_asked(tmp_path):
    path = write_frame(fraud_frame(10, seed=1), tmp_path / "t.parquet")
    kept = path.read_bytes()
    with pytest.raises(FileExistsError, match=r"t\.parquet: already exists; not overwritten"):
        write_frame(fraud_frame(20, seed=2), path, overwrite=False)
    assert path.read_bytes() == kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.parquet"]  # no temporary left


def test_the_source_file_is_kept_unless_forced(tmp_path, capsys):
    """`make demo` runs the same command again: the same rows are left as is; other rows (a
    table of your own, another seed) are refused unless --force."""
    from mlassets.synthetic import main

    out = tmp_path / "data" / "transactions.parquet"
    args = ["--rows", "300", "--seed", "42", "--out", str(out)]
    main(args)
    first = out.read_bytes()
    stamp = out.stat().st_mtime_ns

    main(args)  # make demo, twice
    assert "already holds these 300 rows: left as is" in capsys.readouterr().out
    assert out.read_bytes() == first and out.stat().st_mtime_ns == stamp

    with pytest.raises(SystemExit) as refused:
        main(["--rows", "300", "--seed", "7", "--out", str(out)])
    message = str(refused.value.code)
    assert str(out) in message and "holds other rows" in message and "--force" in message
    assert out.read_bytes() == first

    main(["--rows", "300", "--seed", "7", "--out", str(out), "--force"])
    expected = write_frame(fraud_frame(300, seed=7), tmp_path / "expected.parquet")
    assert out.read_bytes() == expected.read_bytes()

    with pytest.raises(SystemExit) as folder:
        main(["--rows", "10", "--out", str(tmp_path / "data")])
    assert "is a folder (use --batches" in str(folder.value.code)


# --- the churn table: the second bundled spec ----------------------------------------------------

CHURN_SPEC = BUNDLED_SPECS / "churn.yaml"


def _command(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "GX_ANALYTICS_ENABLED": "false"}
    return subprocess.run(
        [sys.executable, "-m", "mlassets.synthetic", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_bundled_churn_spec_loads_as_its_own_model():
    spec = load_spec(CHURN_SPEC)
    fraud = load_spec(DEFAULT_SPEC)
    assert spec.name == "churn_model"
    assert (spec.source, spec.landing) == ("data/churn/customers.parquet", "data/churn/landing")
    assert {spec.source, spec.landing}.isdisjoint({fraud.source, fraud.landing})
    assert spec.id == "customer_id" and spec.label.column == "churned"
    assert spec.sensitive == ["age_band"] and spec.features.derived == []
    assert len(spec.features.numeric) == 24 and spec.features.categorical


def test_churn_command_writes_a_table_the_bundled_spec_accepts(tmp_path):
    from mlassets.ml.steps import validate_raw

    out = tmp_path / "data" / "churn" / "customers.parquet"
    proc = _command("--table", "churn", "--rows", "1500", "--seed", "42", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "wrote 1,500 rows" in proc.stdout and str(out) in proc.stdout

    spec = load_spec(CHURN_SPEC)
    df = pd.read_parquet(out)
    quality = validate_raw(df, spec)
    assert quality.failed == []
    assert quality.outcomes and all(o.success for o in quality.outcomes)
    checked = {o.check for o in quality.outcomes}
    assert {"columns_match_spec", "types_match_spec", "label_classes", "unique"} <= checked
    assert list(df.columns) == list(spec.columns)
    assert df["customer_id"].tolist() == list(range(1, 1501))
    assert 0.07 <= df["churned"].mean() <= 0.13
    assert df[spec.features.numeric].isna().any().sum() == 5  # for the imputer to handle

    # the command writes the function's table, byte for byte
    expected = write_frame(churn_frame(1500, seed=42), tmp_path / "expected.parquet")
    assert out.read_bytes() == expected.read_bytes()


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_the_same_seed_writes_the_same_churn_bytes(tmp_path, suffix):
    a = write_frame(churn_frame(400, seed=11), tmp_path / f"a{suffix}")
    b = write_frame(churn_frame(400, seed=11), tmp_path / f"b{suffix}")
    c = write_frame(churn_frame(400, seed=12), tmp_path / f"c{suffix}")
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()
    pd.testing.assert_frame_equal(churn_frame(400, seed=11), churn_frame(400, seed=11))


@pytest.mark.parametrize("seed", [1, 42, 2024])
def test_churn_rate_is_about_ten_percent(seed):
    assert 0.08 <= churn_frame(20_000, seed=seed)["churned"].mean() <= 0.12


def test_churn_batches_drift_as_fraud_batches_do():
    spec = load_spec(CHURN_SPEC)
    features = spec.features.numeric + spec.features.categorical
    plain = churn_batch(5000, 3, "none", first_id=50)
    pd.testing.assert_frame_equal(plain, churn_frame(5000, seed=3, first_id=50))
    covariate = churn_batch(5000, 3, "covariate", first_id=50)
    assert (
        covariate["days_since_last_login"].median() > 1.5 * plain["days_since_last_login"].median()
    )
    assert (covariate["channel"] == "partner").mean() > (plain["channel"] == "partner").mean() + 0.1
    concept = churn_batch(5000, 3, "concept", first_id=50)
    pd.testing.assert_frame_equal(concept[features], plain[features])  # the same customers
    moved = (concept["churned"] != plain["churned"]).mean()
    assert moved > 0.1  # the same rows, other labels
    with pytest.raises(ValueError, match="drift 'sideways' is unknown"):
        churn_batch(10, 1, "sideways")


def test_churn_batches_land_with_ids_after_the_folders_and_pass_the_batch_checks(tmp_path):
    from mlassets.ml.validation import validate
    from mlassets.synthetic import main

    landing = tmp_path / "landing"
    for drift in ("none", "concept"):
        main(
            ["--table", "churn", "--rows", "300", "--seed", "5", "--batches", "1"]
            + ["--drift", drift, "--out", str(landing)]
        )
    names = sorted(p.name for p in landing.iterdir())
    assert names == ["batch_0001.parquet", "batch_0002.parquet"]
    batches = [pd.read_parquet(landing / n) for n in names]
    ids = pd.concat(batches)["customer_id"]
    assert ids.is_unique and ids.min() == BATCH_FIRST_ID and ids.max() == BATCH_FIRST_ID + 599
    spec = load_spec(CHURN_SPEC)
    for df in batches:
        assert all(o.success for o in validate(df, spec, batch=True))


def test_an_unknown_table_is_refused(tmp_path, capsys):
    from mlassets.synthetic import main

    out = tmp_path / "t.parquet"
    with pytest.raises(SystemExit) as refused:
        main(["--table", "orders", "--rows", "10", "--out", str(out)])
    assert refused.value.code == 2
    err = capsys.readouterr().err
    assert "--table" in err and "'orders'" in err and "fraud" in err and "churn" in err
    assert not out.exists()


def test_start_is_refused_for_the_churn_table_which_has_no_dates(tmp_path, capsys):
    from mlassets.synthetic import main

    out = tmp_path / "t.parquet"
    with pytest.raises(SystemExit) as refused:
        main(["--table", "churn", "--rows", "10", "--start", "2025-03-01", "--out", str(out)])
    assert refused.value.code == 2
    assert "--start applies to --table fraud only" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("table", ["fraud", "churn"])
def test_covariate_strength_scales_the_shift_and_keeps_strength_one(table):
    """Strength 0 is the unshifted batch, 1 the batch `--drift covariate` always gave (its
    digest taken from the generator before `strength` existed), 2 moves further the same way;
    out of range is refused by name."""
    from mlassets.synthetic import table_batch

    moved = {"fraud": "feature_1", "churn": "days_since_last_login"}[table]
    label = {"fraud": "label", "churn": "churned"}[table]
    # churn's taken again when its label gained its unobserved part (F1 0.99 -> 0.70)
    before = {"fraud": 6623208887340344440, "churn": 4752147615131323921}[table]
    digest = pd.util.hash_pandas_object(table_batch(table, 3000, 7, "covariate")).sum()
    assert int(digest) == before
    none = table_batch(table, 4000, 11)
    zero = table_batch(table, 4000, 11, "covariate", strength=0)
    one = table_batch(table, 4000, 11, "covariate", strength=1)
    two = table_batch(table, 4000, 11, "covariate", strength=2)
    pd.testing.assert_frame_equal(zero.drop(columns=label), none.drop(columns=label))
    assert none[moved].mean() < one[moved].mean() < two[moved].mean()
    with pytest.raises(ValueError, match="strength must be in"):
        table_batch(table, 10, 1, "covariate", strength=-1)


@pytest.mark.parametrize("table", ["fraud", "churn"])
def test_batches_can_land_without_labels_and_their_labels_apart(tmp_path, table):
    """--labels-out: each batch as production rows land (no label column), its labels in a
    labels_NNNN.csv of (id, label) that joins back to exactly the batch's own rows."""
    from mlassets.synthetic import ID_COLUMN, LABEL_COLUMN, write_batches

    lab = tmp_path / "lab"
    paths = write_batches(tmp_path / "in", 2, 300, 9, "covariate", table=table, labels_out=lab)
    same = write_batches(tmp_path / "with", 2, 300, 9, "covariate", table=table)
    for i, (path, full) in enumerate(zip(paths, same, strict=True), 1):
        rows, labels = pd.read_parquet(path), pd.read_csv(lab / f"labels_{i:04d}.csv")
        expected = pd.read_parquet(full)
        assert LABEL_COLUMN[table] not in rows.columns
        assert list(labels.columns) == [ID_COLUMN[table], LABEL_COLUMN[table]]
        joined = rows.merge(labels, on=ID_COLUMN[table])
        pd.testing.assert_frame_equal(joined[expected.columns], expected)
