"""Bounded everything: what user data can make long is cut in bytes, and says so.

Three 5 MB strings in a category column once wrote 120-165 MB of event metadata (a markdown
preview pads every cell to its widest); a source URL read /etc/os-release into a check message;
a 3,000,000-row Parquet ran for a minute before failing. Each case runs `raw_data` (and below)
on a real Dagster instance and measures what it wrote to the instance's event log.
"""

from pathlib import Path

import pandas as pd
import pytest
import yaml

from mlassets.ml import bounded
from mlassets.spec import DEFAULT_SPEC
from mlassets_tests.conftest import Env

pytestmark = pytest.mark.integration

ROWS = 2000
LONG = 5_000_000  # bytes of each long string
# What one run of raw_data (and below) may write to the event log: the events' serialized size
# and the growth of the instance's folder (SQLite pages included). Before: 120 MB and 240 MB.
EVENT_BYTES = 256_000
HOME_GROWTH = 4_000_000


def folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def world(root: Path, instance, frame: pd.DataFrame, **spec_changes) -> Env:
    """A spec of our own beside its source (`data/transactions.parquet`), the fraud columns."""
    from mlassets.synthetic import write_frame

    folder = root / "project"
    raw = {**yaml.safe_load(DEFAULT_SPEC.read_text()), **spec_changes}
    folder.mkdir()
    (folder / "spec.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    write_frame(frame, folder / "data" / "transactions.parquet")
    return Env(
        root=root,
        instance=instance,
        tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
        spec_path=folder / "spec.yaml",
        data_root=folder,
    )


def with_long_categories(rows: int = ROWS) -> pd.DataFrame:
    from mlassets.synthetic import fraud_frame

    df = fraud_frame(rows, seed=7).astype({"category": object})
    for i in (3, 5, 8):  # in the preview's first rows, as in the issue
        df.loc[i, "category"] = chr(ord("a") + i) * LONG
    return df


def built(env: Env, *modules) -> list:
    """The assets of `modules` (`mlassets.assets.data`, `.features`) for the world's one model,
    as the code location builds them for one spec file (unprefixed names)."""
    from mlassets.catalog import Model
    from mlassets.spec import load_spec

    m = Model(load_spec(env.spec_path).name)
    return [a for module in modules for a in module.build(m)]


def materialize(env: Env, *modules):
    """Materialize the assets of `modules` for the world's model."""
    from dagster import materialize as run

    return run(
        built(env, *modules), resources=env.resources(), instance=env.instance, raise_on_error=False
    )


def event_sizes(instance, run_id: str) -> list[tuple[object, int]]:
    from dagster import serialize_value

    return [(e, len(serialize_value(e))) for e in instance.all_logs(run_id)]


def metadata_entries(instance, run_id: str):
    """Every metadata entry any event of the run carries: (event type, key, serialized bytes)."""
    from dagster import serialize_value

    for e in instance.all_logs(run_id):
        event = e.dagster_event
        if event is None:
            continue
        data = event.event_specific_data
        for holder in (data, getattr(data, "materialization", None)):
            for key, value in (getattr(holder, "metadata", None) or {}).items():
                yield event.event_type_value, key, len(serialize_value(value))


def failure_message(result, step: str = "raw_data") -> str:
    data = result.failure_data_for_node(step)
    return data.user_failure_data.description if data.user_failure_data else data.error.message


def assert_bounded_run(env: Env, result, home_before: int) -> dict:
    """The run's events and the instance's growth stay small; every metadata entry too."""
    sizes = event_sizes(env.instance, result.run_id)
    total = sum(n for _, n in sizes)
    growth = folder_size(Path(env.instance.root_directory)) - home_before
    assert total < EVENT_BYTES, (
        total,
        sorted((n, str(e.dagster_event_type)) for e, n in sizes)[-3:],
    )
    assert growth < HOME_GROWTH, growth
    for event_type, key, n in metadata_entries(env.instance, result.run_id):
        assert n <= bounded.METADATA_BYTES + 1_000, (event_type, key, n)
    for e, _ in sizes:
        assert len(e.user_message.encode()) <= bounded.MESSAGE_BYTES + 1_000, e.user_message[:300]
    return {"events": total, "growth": growth}


def test_megabyte_strings_in_a_category_column_write_bounded_metadata(tmp_path, dagster_instance):
    """The issue's file: 3 x 5 MB strings in `category`, whose spec allows four values. The
    `values_allowed` check fails naming the column with a bounded message; the preview shows
    the cells cut; the whole run writes kilobytes to the event log, not hundreds of megabytes."""
    from dagster import AssetKey

    from mlassets.assets import data

    env = world(tmp_path, dagster_instance, with_long_categories())
    before = folder_size(Path(dagster_instance.root_directory))
    result = materialize(env, data)
    assert not result.success
    figures = assert_bounded_run(env, result, before)
    print(f"raw_data with 3 x 5 MB strings: {figures}")

    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    allowed = checks["values_allowed"]
    assert not allowed.passed
    description = allowed.description or ""
    assert "'category'" in description and "3 offending row(s)" in description
    assert len(description.encode()) <= bounded.MESSAGE_BYTES
    assert "cut:" in description, "a cut value says it was cut"
    for name, check in checks.items():
        if name != "values_allowed":
            assert check.passed, (name, check.description)

    (materialization,) = [
        m
        for m in result.asset_materializations_for_node("raw_data")
        if m.asset_key == AssetKey("raw_data")
    ]
    preview = materialization.metadata["preview"].value
    assert "[cut: 5,000,000 bytes" in preview and len(preview.encode()) <= bounded.METADATA_BYTES
    assert figures["events"] < EVENT_BYTES  # measured: ~80 kB (was 120 MB)


def test_features_and_splits_previews_of_megabyte_strings_are_bounded(tmp_path, dagster_instance):
    """With no allowed-values rule the long strings pass the checks and travel into features and
    the splits: their previews and schemas are bounded too."""
    from mlassets.assets import data, features

    frame = with_long_categories()
    spec = yaml.safe_load(DEFAULT_SPEC.read_text())
    columns = {**spec["columns"], "category": {"type": "category"}}
    env = world(tmp_path, dagster_instance, frame, columns=columns)
    before = folder_size(Path(dagster_instance.root_directory))
    result = materialize(env, data, features)
    assert result.success, failure_message(result)
    print(
        f"raw_data, features, splits with 3 x 5 MB strings: {assert_bounded_run(env, result, before)}"
    )
    previews = [
        m.metadata["preview"].value
        for node in ("raw_data", "features", "splits")
        for m in result.asset_materializations_for_node(node)
    ]
    assert len(previews) == 5  # raw_data, features, train/validation/test
    assert any("[cut: 5,000,000 bytes" in p for p in previews)


def test_a_url_source_is_refused_before_anything_is_read(tmp_path, dagster_instance):
    """`file:///etc/os-release#.csv` got past the suffix check and its lines showed in a check
    message: now the spec's `source` is refused, named with its value, and nothing of the file
    is in the run's events."""
    from mlassets.assets import data

    os_release = Path("/etc/os-release").read_text()
    marker = next(line for line in os_release.splitlines() if "=" in line)
    url = "file:///etc/os-release#.csv"
    for external in (False, True):  # even opted in, the suffix is the path's, not the fragment's
        root = tmp_path / f"external_{external}"
        root.mkdir()
        env = world(
            root, dagster_instance, with_long_categories(10), source=url, allow_external=external
        )
        result = materialize(env, data)
        assert not result.success
        message = failure_message(result)
        assert url in message and len(message.encode()) <= bounded.MESSAGE_BYTES
        if external:
            assert "unsupported file type" in message
        else:
            assert "`source`" in message and "allow_external: true" in message
        logged = " ".join(e.user_message for e in dagster_instance.all_logs(result.run_id))
        assert marker not in logged
        assert not result.asset_materializations_for_node("raw_data")


def test_a_source_over_max_rows_fails_raw_data_naming_the_key(tmp_path, dagster_instance):
    from mlassets.assets import data
    from mlassets.synthetic import fraud_frame

    env = world(tmp_path, dagster_instance, fraud_frame(ROWS, seed=7), max_rows=ROWS - 1)
    result = materialize(env, data)
    assert not result.success
    message = failure_message(result)
    assert f"{ROWS:,} rows" in message and "`max_rows`" in message
    assert str(env.spec_path) in message and "transactions.parquet" in message
    assert not result.asset_materializations_for_node("raw_data")


# -- the metadata helpers --------------------------------------------------------------------------


@pytest.mark.unit
def test_preview_clips_cells_and_the_table():
    from mlassets.assets.metadata import preview

    df = pd.DataFrame(
        {
            "x" * 1000: [1, 2, 3],
            "text": ["short", "y" * LONG, None],
            "when": pd.to_datetime(["2025-01-01", "2025-01-02", None]),
            "cat": pd.Categorical(["a", "z" * 10_000, "a"]),
        }
    )
    md = preview(df).value
    assert len(md.encode()) <= bounded.METADATA_BYTES
    assert "short" in md and "2025-01-01" in md and "[cut: 5,000,000 bytes" in md
    assert "[cut: 10,000 bytes" in md and "[cut: 1,000 bytes" in md
    wide = pd.DataFrame({f"column_{i}": ["v" * 150] for i in range(500)})
    md = preview(wide).value
    assert len(md.encode()) <= bounded.METADATA_BYTES and "cut:" in md


@pytest.mark.unit
def test_schema_metadata_keeps_names_short_and_counts_what_it_leaves_out():
    from mlassets.assets.metadata import schema_metadata

    schema = schema_metadata(pd.DataFrame({"n" * 5000: [1.0, None]}))
    (column,) = schema.columns
    assert "cut:" in column.name and len(column.name.encode()) <= bounded.VALUE_BYTES
    assert column.description == "1 missing"
    wide = schema_metadata(pd.DataFrame({f"c{i:05d}": [0] for i in range(5000)}))
    assert 100 < len(wide.columns) < 1000
    assert wide.columns[-1].name.endswith(" more columns")
    shown = len(wide.columns) - 1
    assert f"{5000 - shown:,} more" in wide.columns[-1].name


@pytest.mark.unit
def test_md_table_and_json_list_are_bounded():
    import json

    from mlassets.assets.metadata import json_list, md_table

    md = md_table([{"column": "c", "sample": ["q" * LONG] * 3}, {"column": "d", "sample": [1]}])
    assert len(md.value.encode()) <= bounded.METADATA_BYTES and "cut:" in md.value
    assert md_table([]).value == "(none)"
    assert md_table([{"a": 1, "b": "x"}]).value == pd.DataFrame([{"a": 1, "b": "x"}]).to_markdown(
        index=False
    )
    items = [{"name": f"batch_{i:05d}.parquet", "digest": "0" * 16} for i in range(5000)]
    shown = json_list(items).data
    assert len(json.dumps(shown).encode()) <= bounded.METADATA_BYTES
    assert shown[0] == items[0] and shown[-1].endswith("(5,000 in all)")
    assert json_list(items[:3]).data == items[:3]
