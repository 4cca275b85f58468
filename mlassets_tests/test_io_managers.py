"""The value store, through real Dagster runs: formats, per-run directories, LATEST, pruning.

Toy assets record what they loaded in `SEEN`; the tests compare that with what their upstream
returned in memory (`output_for_node`) and with what lies on disk.
"""

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io
from dagster import (
    AssetExecutionContext,
    AssetOut,
    Config,
    asset,
    instance_for_test,
    materialize,
    multi_asset,
)
from sklearn.linear_model import LogisticRegression

from mlassets.io_managers import LATEST, ValueStore
from mlassets.ml.provenance import Candidate, Rows, stamp
from mlassets.ml.records import Staged
from mlassets.ml.training import SKOPS_TRUSTED_TYPES

pytestmark = pytest.mark.integration

SEEN: dict[str, object] = {}
FEATURES = ["x1", "x2"]


class Who(Config):
    who: str = "A"


class Nested(Config):
    store: str


class HomeMadeClassifier(LogisticRegression):
    """A class skops has never heard of: its files must not load."""


def toy_frame(who: str) -> Rows:
    rng = np.random.default_rng(0)
    n = 120
    df = pd.DataFrame(
        {
            "x1": rng.normal(size=n),
            "x2": rng.integers(0, 50, size=n),
            "category": pd.Categorical(rng.choice(["a", "b", "c"], size=n)),
            "ts": pd.date_range("2024-01-01", periods=n, freq="h"),
            "label": rng.integers(0, 2, size=n),
        }
    )
    record = {
        "who": who,
        "split": {"train": "f00d", "sizes": [80, 40]},
        "quality": {"passed": True},
    }
    return stamp(df, record)


@asset
def frame(config: Who) -> Rows:
    return toy_frame(config.who)


@asset
def candidate(frame: Rows) -> Candidate:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import FixedThresholdClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = FixedThresholdClassifier(
        make_pipeline(
            StandardScaler(), HistGradientBoostingClassifier(max_iter=10, random_state=0)
        ),
        threshold=0.4,
    ).fit(frame.frame[FEATURES], frame.frame["label"])
    return Candidate(model=model, provenance={"digest": "abc123", "trained_on": {"rows": 120}})


@asset
def report(frame: Rows) -> dict:
    return {
        "mean": np.float64(frame.frame["x1"].mean()),
        "rows": np.int64(len(frame)),
        "counts": np.array([1, 2, 3]),
        "passed": np.bool_(True),
        "when": pd.Timestamp("2024-01-01"),
        "gates": [{"name": "f1", "value": np.float32(0.5)}],
    }


@multi_asset(outs={"left": AssetOut(), "right": AssetOut()})
def halves(frame: Rows):
    return frame.frame.iloc[:60], frame.frame.iloc[60:]  # plain frames: no record


@asset
def nothing():
    return None


@asset
def consumer(frame: Rows, candidate: Candidate, report: dict, left, right, nothing) -> dict:
    SEEN.update(frame=frame, candidate=candidate, report=report, left=left, right=right)
    SEEN["nothing"] = nothing
    return {"rows": len(frame)}


@asset
def reader(frame: Rows) -> dict:
    SEEN["reader"] = frame
    return {"who": frame.provenance["who"]}


@asset(deps=[frame])
def interloper(context: AssetExecutionContext, config: Nested) -> dict:
    """Another run materializes `frame` (who=other) while this run is between frame and reader."""
    result = materialize(
        [frame],
        instance=context.instance,
        resources={"io_manager": ValueStore(base_path=config.store)},
        run_config={"ops": {"frame": {"config": {"who": "other"}}}},
    )
    return {"run_id": result.run_id}


@asset(deps=[interloper])
def late_reader(frame: Rows) -> dict:
    SEEN["late_reader"] = frame
    return {}


class Opaque:
    pass


@asset
def opaque():
    return Opaque()


@asset
def homemade(frame: Rows) -> Candidate:
    model = HomeMadeClassifier().fit(frame.frame[FEATURES], frame.frame["label"])
    return Candidate(model=model, provenance={"digest": "home"})


@asset
def homemade_user(homemade: Candidate) -> dict:
    return {}


@pytest.fixture(scope="module")
def instance(tmp_path_factory):
    """One instance for the module (runs are told apart by id; each test has its own store)."""
    with instance_for_test(temp_dir=str(tmp_path_factory.mktemp("dagster_home"))) as inst:
        yield inst


@pytest.fixture(autouse=True)
def _clear_seen():
    SEEN.clear()


def run(assets, store: Path, instance, *, who: str = "A", keep_runs: int = 10, **kwargs):
    selected = kwargs.get("selection") or assets
    config = {"frame": {"config": {"who": who}}} if frame in selected else {}
    config.update(kwargs.pop("ops", {}))
    return materialize(
        assets,
        instance=instance,
        resources={"io_manager": ValueStore(base_path=str(store), keep_runs=keep_runs)},
        run_config={"ops": config},
        raise_on_error=False,
        **kwargs,
    )


def failure_text(result) -> str:
    return "\n".join(
        e.step_failure_data.error.to_string() for e in result.all_events if e.is_step_failure
    )


def run_dirs(store: Path, key: str) -> set[str]:
    return {p.name for p in (store / key).iterdir() if p.is_dir()}


def latest(store: Path, key: str) -> str:
    return (store / key / LATEST).read_text()


def logs(instance, run_id: str) -> str:
    return "\n".join(e.user_message for e in instance.all_logs(run_id))


def test_values_round_trip_as_parquet_skops_and_json(tmp_path, instance):
    store = tmp_path / "store"
    result = run([frame, candidate, report, halves, nothing, consumer], store, instance)
    assert result.success, failure_text(result)
    rid = result.run_id

    rows = result.output_for_node("frame")
    written = rows.frame
    assert isinstance(SEEN["frame"], Rows)
    pd.testing.assert_frame_equal(SEEN["frame"].frame, written)
    assert SEEN["frame"].provenance == rows.provenance
    assert SEEN["frame"].provenance["split"] == {"train": "f00d", "sizes": [80, 40]}
    assert SEEN["frame"].frame.attrs == {}  # the record is beside the frame, not in it
    assert isinstance(SEEN["frame"].frame["category"].dtype, pd.CategoricalDtype)

    model = result.output_for_node("candidate")
    X = written[FEATURES]
    assert isinstance(SEEN["candidate"], Candidate)
    assert SEEN["candidate"].provenance == model.provenance
    np.testing.assert_array_equal(
        SEEN["candidate"].model.predict_proba(X), model.model.predict_proba(X)
    )
    np.testing.assert_array_equal(SEEN["candidate"].predict(X), model.predict(X))
    # the model needed the explicit trusted list (tree predictors), and nothing beyond it
    skops_file = store / "candidate" / rid / "model.skops"
    needed = set(skops.io.get_untrusted_types(file=skops_file))
    assert needed and needed <= set(SKOPS_TRUSTED_TYPES)

    assert SEEN["report"] == {
        "mean": float(written["x1"].mean()),
        "rows": 120,
        "counts": [1, 2, 3],
        "passed": True,
        "when": "2024-01-01 00:00:00",
        "gates": [{"name": "f1", "value": 0.5}],
    }
    assert type(SEEN["report"]["mean"]) is float and type(SEEN["report"]["rows"]) is int

    # a multi_asset's outputs are separate assets, each with its own folder
    assert isinstance(SEEN["left"], pd.DataFrame)  # a plain frame stays a plain frame
    pd.testing.assert_frame_equal(SEEN["left"], written.iloc[:60])
    pd.testing.assert_frame_equal(SEEN["right"], written.iloc[60:])
    assert SEEN["nothing"] is None

    # the layout: one directory per asset and run, LATEST beside it, nothing else
    files = {p.relative_to(store).as_posix() for p in store.rglob("*") if p.is_file()}
    value_files = {
        f"frame/{rid}/value.parquet",
        f"frame/{rid}/provenance.json",
        f"candidate/{rid}/model.skops",
        f"candidate/{rid}/provenance.json",
        f"report/{rid}/value.json",
        f"left/{rid}/value.parquet",
        f"right/{rid}/value.parquet",
        f"consumer/{rid}/value.json",
    }
    keys = ["frame", "candidate", "report", "left", "right", "nothing", "consumer"]
    assert files == value_files | {f"{k}/LATEST" for k in keys}
    assert list((store / "nothing" / rid).iterdir()) == []  # None: nothing written
    for key in keys:
        assert latest(store, key) == rid

    # no pickle anywhere: every file is what its name says, by its first bytes
    for name in value_files:
        head = (store / name).read_bytes()[:4]
        assert not head.startswith(b"\x80"), f"{name} looks like a pickle"
        expected = {".parquet": b"PAR1", ".skops": b"PK\x03\x04"}.get(Path(name).suffix)
        if expected:
            assert head == expected, name
        else:
            json.loads((store / name).read_text())

    meta = result.asset_materializations_for_node("frame")[0].metadata
    assert meta["run_id"].value == rid
    assert meta["path"].value == str(store / "frame" / rid)
    none_meta = result.asset_materializations_for_node("nothing")[0].metadata
    assert "path" not in none_meta and "run_id" not in none_meta


def test_a_partial_run_reads_the_latest_value(tmp_path, instance):
    store = tmp_path / "store"
    first = run([frame], store, instance, who="A")
    second = run([frame], store, instance, who="B")
    assert first.success and second.success
    assert run_dirs(store, "frame") == {first.run_id, second.run_id}
    assert latest(store, "frame") == second.run_id

    partial = run([frame, reader], store, instance, selection=[reader])
    assert partial.success, failure_text(partial)
    assert SEEN["reader"].provenance["who"] == "B"
    pd.testing.assert_frame_equal(SEEN["reader"].frame, second.output_for_node("frame").frame)
    assert run_dirs(store, "frame") == {first.run_id, second.run_id}  # nothing written for frame
    log = logs(instance, partial.run_id)
    assert f"loading frame written by run {second.run_id}" in log
    assert "LATEST pointer" in log


def test_a_partial_run_of_a_never_materialized_upstream_fails_clearly(tmp_path, instance):
    store = tmp_path / "store"
    result = run([frame, reader], store, instance, selection=[reader])
    assert not result.success
    assert f"frame has never been materialized under {store}: materialize it first" in (
        failure_text(result)
    )


def test_a_run_reads_its_own_upstream_even_when_another_run_wrote_later(tmp_path, instance):
    store = tmp_path / "store"
    result = run(
        [frame, interloper, late_reader],
        store,
        instance,
        who="B",
        ops={"interloper": {"config": {"store": str(store)}}},
    )
    assert result.success, failure_text(result)
    other = result.output_for_node("interloper")["run_id"]
    assert other != result.run_id
    # the other run wrote after this run's frame and moved LATEST ...
    assert latest(store, "frame") == other
    assert run_dirs(store, "frame") == {result.run_id, other}
    # ... yet this run's reader loaded this run's frame
    assert SEEN["late_reader"].provenance["who"] == "B"
    log = logs(instance, result.run_id)
    assert f"loading frame written by run {result.run_id}" in log
    assert "the run that materialized it for this run" in log


def test_a_value_without_a_pickle_free_format_fails_the_run(tmp_path, instance):
    store = tmp_path / "store"
    result = run([opaque], store, instance)
    assert not result.success
    text = failure_text(result)
    assert "opaque: cannot store a mlassets_tests.test_io_managers.Opaque" in text
    assert (
        "no pickle" in text and "return a DataFrame, Rows, a Candidate, a record or a dict" in text
    )
    assert not (store / "opaque").exists()  # refused before anything was written


def test_a_model_with_an_untrusted_type_is_refused_at_load(tmp_path, instance):
    store = tmp_path / "store"
    result = run([frame, homemade, homemade_user], store, instance)
    assert not result.success
    assert (store / "homemade" / result.run_id / "model.skops").exists()  # written, not loaded
    text = failure_text(result)
    assert "homemade: refusing to load" in text
    assert str(store / "homemade" / result.run_id / "model.skops") in text
    assert "mlassets_tests.test_io_managers.HomeMadeClassifier" in text


def test_a_foreign_file_in_a_run_directory_is_refused(tmp_path, instance):
    store = tmp_path / "store"
    first = run([frame], store, instance)
    assert first.success
    (store / "frame" / first.run_id / "value.pkl").write_bytes(b"\x80\x04N.")
    partial = run([frame, reader], store, instance, selection=[reader])
    assert not partial.success
    text = failure_text(partial)
    assert f"refusing to load {store / 'frame' / first.run_id}" in text
    assert "['value.pkl']" in text
    assert "reader" not in SEEN


def test_keep_runs_keeps_the_newest_run_directories(tmp_path, instance):
    store = tmp_path / "store"
    ids = []
    for i in range(3):
        result = run([frame], store, instance, who=f"w{i}", keep_runs=2)
        assert result.success, failure_text(result)
        ids.append(result.run_id)
        # deterministic ages without sleeping: run i was written at t = 1000 + i
        os.utime(store / "frame" / result.run_id, (1000 + i, 1000 + i))
        assert run_dirs(store, "frame") == set(ids[-2:])
    assert latest(store, "frame") == ids[-1]


def test_keep_runs_must_be_positive(tmp_path):
    with pytest.raises(Exception, match="keep_runs"):
        ValueStore(base_path=str(tmp_path), keep_runs=0)


def test_the_store_works_on_a_non_local_fsspec_filesystem(tmp_path, instance):
    import fsspec

    fs = fsspec.filesystem("memory")
    root = f"/value-store-{tmp_path.name}"
    store = ValueStore(base_path=f"memory://{root}", keep_runs=1)
    try:
        for who in ("A", "B"):
            result = materialize(
                [frame],
                instance=instance,
                resources={"io_manager": store},
                run_config={"ops": {"frame": {"config": {"who": who}}}},
            )
        partial = materialize(
            [frame, reader], selection=[reader], instance=instance, resources={"io_manager": store}
        )
        assert partial.success
        assert SEEN["reader"].provenance["who"] == "B"
        assert {p.removeprefix(root) for p in fs.find(root) if "/frame/" in p} == {
            f"/frame/{result.run_id}/value.parquet",
            f"/frame/{result.run_id}/provenance.json",
            "/frame/LATEST",
        }  # keep_runs=1: run A's directory was pruned
    finally:
        fs.rm(root, recursive=True)


@asset
def candidate_user(candidate: Candidate) -> dict:
    return {"digest": candidate.digest}


def test_a_model_file_swapped_under_its_record_is_refused(tmp_path, instance):
    """The record names the bytes it was written with: another (trusted) model put in the run
    directory does not pass for the candidate the record describes."""
    store = tmp_path / "store"
    first = run([frame, candidate], store, instance, who="A")
    assert first.success
    other = run([frame, candidate], store / "other", instance, who="B")
    assert other.success
    mine = store / "candidate" / first.run_id / "model.skops"
    theirs = store / "other" / "candidate" / other.run_id / "model.skops"
    assert mine.read_bytes() != theirs.read_bytes()
    mine.write_bytes(theirs.read_bytes())

    result = run([frame, candidate, candidate_user], store, instance, selection=[candidate_user])
    assert not result.success
    text = failure_text(result)
    assert "candidate: refusing to load" in text
    assert "its bytes are not the ones provenance.json was written for" in text


def test_a_frame_swapped_under_its_record_is_refused(tmp_path, instance):
    """The record names the shape of the rows it was written with: another table put in the run
    directory does not pass for the rows the record describes."""
    store = tmp_path / "store"
    first = run([frame], store, instance, who="A")
    assert first.success
    path = store / "frame" / first.run_id / "value.parquet"
    pd.read_parquet(path).head(7).to_parquet(path)

    result = run([frame, reader], store, instance, selection=[reader])
    assert not result.success
    text = failure_text(result)
    assert "frame: refusing to load" in text
    assert "it holds 7 rows of 5 columns, not the 120 rows of 5 columns" in text
    assert "reader" not in SEEN


def test_a_frame_carrying_its_record_in_pandas_attrs_is_refused(tmp_path, instance):
    """A value written before records lived beside frames (in `DataFrame.attrs`) is not taken
    for rows without a record: it says to materialize again."""
    store = tmp_path / "store"
    first = run([frame], store, instance, who="A")
    assert first.success
    folder = store / "frame" / first.run_id
    old = pd.read_parquet(folder / "value.parquet")
    old.attrs["provenance"] = json.loads((folder / "provenance.json").read_text())["provenance"]
    old.to_parquet(folder / "value.parquet")
    (folder / "provenance.json").unlink()

    result = run([frame, reader], store, instance, selection=[reader])
    assert not result.success
    text = failure_text(result)
    assert "written by an older mlassets, before frames kept their provenance beside them" in text
    assert "reader" not in SEEN


@asset
def staged() -> Staged:
    return Staged(name="fraud_detection", version="3", candidate="abc", evaluated_against="2")


@asset
def promoted(staged: Staged) -> dict:
    SEEN["staged"] = staged
    return {"version": staged.version}


def test_a_typed_record_round_trips_and_a_tampered_one_is_refused(tmp_path, instance):
    store = tmp_path / "store"
    first = run([staged, promoted], store, instance)
    assert first.success, failure_text(first)
    assert SEEN["staged"] == first.output_for_node("staged")  # the model, not a dict
    path = store / "staged" / first.run_id / "value.json"
    data = json.loads(path.read_text())
    assert (data["mlassets.record"], data["schema_version"]) == ("staged", 1)

    path.write_text(json.dumps({**data, "version": None}))
    SEEN.clear()
    again = run([staged, promoted], store, instance, selection=[promoted])
    assert not again.success
    text = failure_text(again)
    assert f"staged: {path}: not a valid staged record: version:" in text
    assert "staged" not in SEEN
