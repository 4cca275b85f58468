"""The dataset spec: loading, validation that names the offending key, and path resolution."""

import copy
from pathlib import Path

import pytest
import yaml

import mlassets.settings  # noqa: F401
from mlassets.spec import DEFAULT_SPEC, DatasetSpec, SpecError, load_spec

BASE = yaml.safe_load(DEFAULT_SPEC.read_text())


def write_spec(tmp_path: Path, raw, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(raw if isinstance(raw, str) else yaml.safe_dump(raw, sort_keys=False))
    return path


def mutated(change) -> dict:
    raw = copy.deepcopy(BASE)
    change(raw)
    return raw


def spec_error(tmp_path: Path, raw) -> str:
    path = write_spec(tmp_path, raw)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    message = str(info.value)
    assert str(path) in message, "the message names the file"
    return message


# -- the bundled spec ------------------------------------------------------------------------------


def test_bundled_spec_loads_with_the_seed_schema():
    spec = load_spec(DEFAULT_SPEC)
    assert spec.name == "fraud_detection"
    assert list(spec.columns) == [
        "user_id",
        "timestamp",
        "feature_1",
        "feature_2",
        "signup_date",
        "total_purchases",
        "category",
        "label",
    ]
    assert spec.label.column == "label" and spec.label.positive == 1
    assert spec.id == "user_id" and spec.timestamp == "timestamp"
    assert spec.columns["feature_1"].min == 0 and spec.columns["feature_1"].max == 100
    assert spec.columns["category"].values == ["electronics", "grocery", "travel", "fashion"]
    assert spec.path == DEFAULT_SPEC.resolve()


def test_input_columns_are_numeric_then_derived_then_categorical():
    spec = load_spec(DEFAULT_SPEC)
    assert spec.input_columns == [
        "feature_1",
        "feature_2",
        "total_purchases",
        "days_since_signup",
        "purchase_frequency",
        "category",
    ]
    assert spec.numeric_inputs == spec.input_columns[:-1]
    assert spec.feature_columns == spec.input_columns


def test_load_spec_without_a_path_uses_the_environment_then_the_bundled_spec(tmp_path, monkeypatch):
    monkeypatch.delenv("MLASSETS_SPEC", raising=False)
    assert load_spec().path == DEFAULT_SPEC.resolve()
    own = write_spec(tmp_path, mutated(lambda r: r.update(name="my_model")))
    monkeypatch.setenv("MLASSETS_SPEC", str(own))
    spec = load_spec()
    assert spec.name == "my_model"
    assert spec.path == own.resolve()


def test_a_minimal_spec_gets_defaults(tmp_path):
    path = write_spec(
        tmp_path,
        {
            "name": "tiny",
            "source": "t.csv",
            "label": {"column": "y"},
            "columns": {"x": {"type": "float"}, "y": {"type": "integer"}},
            "features": {"numeric": ["x"]},
        },
    )
    spec = load_spec(path)
    assert spec.label.positive == 1
    assert spec.id is None and spec.timestamp is None and spec.landing is None
    assert spec.sensitive == [] and spec.min_rows == 1
    assert spec.columns["x"].nullable is True and spec.columns["x"].unique is False
    assert spec.input_columns == ["x"]


# -- bad specs fail fast, naming the key ---------------------------------------------------------


def _unknown_numeric(r):
    r["features"]["numeric"].append("feature_9")


def _min_above_max(r):
    r["columns"]["feature_1"].update(min=100, max=0)


def _unknown_derived(r):
    r["features"]["derived"] = ["days_since_signup", "account_karma"]


def _derived_needs_missing_column(r):
    del r["columns"]["total_purchases"]
    r["features"]["numeric"].remove("total_purchases")


def _derived_needs_timestamp(r):
    del r["timestamp"]


def _extra_top_level_key(r):
    r["colour"] = "blue"


def _extra_column_key(r):
    r["columns"]["feature_2"]["colour"] = "blue"


def _unknown_label_column(r):
    r["label"]["column"] = "is_fraud"


def _unknown_sensitive(r):
    r["sensitive"] = ["category", "country"]


def _unknown_categorical(r):
    r["features"]["categorical"] = ["country"]


def _label_as_feature(r):
    r["features"]["numeric"].append("label")


def _timestamp_not_datetime(r):
    r["timestamp"] = "feature_1"


def _bad_column_type(r):
    r["columns"]["feature_1"]["type"] = "decimal"


def _range_on_category(r):
    r["columns"]["category"]["min"] = 0


def _feature_twice(r):
    r["features"]["categorical"].append("feature_1")


def _no_features(r):
    r["features"] = {}


def _missing_columns(r):
    del r["columns"]


def _zero_min_rows(r):
    r["min_rows"] = 0


def _bad_name(r):
    r["name"] = "fraud detection!"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (_unknown_numeric, ["features.numeric[3]", "'feature_9'"]),
        (_min_above_max, ["columns.feature_1", "min (100.0) is greater than max (0.0)"]),
        (_unknown_derived, ["features.derived[1]", "'account_karma'", "days_since_signup"]),
        (
            _derived_needs_missing_column,
            ["features.derived[1]", "'purchase_frequency'", "'total_purchases'"],
        ),
        (_derived_needs_timestamp, ["features.derived[0]", "timestamp key"]),
        (_extra_top_level_key, ["colour", "Extra inputs are not permitted"]),
        (_extra_column_key, ["columns.feature_2.colour", "Extra inputs are not permitted"]),
        (_unknown_label_column, ["label.column", "'is_fraud'"]),
        (_unknown_sensitive, ["sensitive[1]", "'country'"]),
        (_unknown_categorical, ["features.categorical[0]", "'country'"]),
        (_label_as_feature, ["features", "label column 'label' cannot be a feature"]),
        (_timestamp_not_datetime, ["timestamp", "'feature_1' must have type datetime"]),
        (_bad_column_type, ["columns.feature_1.type", "'decimal'"]),
        (_range_on_category, ["columns.category", "min/max only apply"]),
        (_feature_twice, ["features", "listed twice", "feature_1"]),
        (_no_features, ["features", "at least one"]),
        (_missing_columns, ["columns", "Field required"]),
        (_zero_min_rows, ["min_rows", "(got 0)"]),
        (_bad_name, ["name", "'fraud detection!'"]),
    ],
    ids=lambda v: v.__name__.strip("_") if callable(v) else "",
)
def test_a_bad_spec_raises_spec_error_naming_the_key(tmp_path, change, expected):
    message = spec_error(tmp_path, mutated(change))
    for part in expected:
        assert part in message, f"{part!r} not in {message!r}"


def test_every_offending_key_is_reported_at_once(tmp_path):
    def two_faults(r):
        r["colour"] = "blue"
        r["columns"]["feature_1"].update(min=100, max=0)

    message = spec_error(tmp_path, mutated(two_faults))
    assert "colour" in message and "columns.feature_1" in message


def test_invalid_yaml_raises_spec_error(tmp_path):
    message = spec_error(tmp_path, "name: fraud\ncolumns: {user_id: [unclosed\n")
    assert "not valid YAML" in message


def test_a_top_level_list_raises_spec_error(tmp_path):
    message = spec_error(tmp_path, "- name\n- source\n")
    assert "expected a mapping at the top level" in message


def test_an_empty_file_raises_spec_error(tmp_path):
    assert "expected a mapping" in spec_error(tmp_path, "")


def test_a_missing_file_raises_spec_error_naming_it(tmp_path):
    missing = tmp_path / "nowhere" / "spec.yaml"
    with pytest.raises(SpecError, match="does not exist") as info:
        load_spec(missing)
    assert str(missing) in str(info.value)


def test_spec_error_is_a_value_error():
    assert issubclass(SpecError, ValueError)


def test_a_spec_is_immutable():
    spec = load_spec(DEFAULT_SPEC)
    with pytest.raises(ValueError):
        spec.name = "other"  # type: ignore[misc]


# -- resolve() -----------------------------------------------------------------------------------


@pytest.fixture
def own_spec(tmp_path) -> DatasetSpec:
    folder = tmp_path / "project" / "specs"
    folder.mkdir(parents=True)
    return load_spec(write_spec(folder, BASE))


def test_resolve_joins_a_relative_path_to_the_spec_folder(own_spec, tmp_path):
    expected = tmp_path / "project" / "specs" / "data" / "transactions.parquet"
    assert own_spec.resolve(own_spec.source) == str(expected.resolve())
    assert own_spec.resolve("../data/x.csv") == str((tmp_path / "project/data/x.csv").resolve())


def test_resolve_joins_a_relative_path_to_an_explicit_root(own_spec, tmp_path):
    root = tmp_path / "elsewhere"
    assert own_spec.resolve("data/landing", root=root) == str((root / "data/landing").resolve())
    assert own_spec.resolve("data/landing", root=str(root)) == str(
        (root / "data/landing").resolve()
    )


def test_resolve_keeps_an_absolute_path(own_spec, tmp_path):
    absolute = str(tmp_path / "abs" / "t.csv")
    assert own_spec.resolve(absolute) == absolute
    assert own_spec.resolve(absolute, root=tmp_path / "other") == absolute


@pytest.mark.parametrize(
    "url", ["s3://b/k.parquet", "memory://x.csv", "gs://bucket/dir/t.csv", "file:///tmp/t.pq"]
)
def test_resolve_keeps_a_url(own_spec, tmp_path, url):
    assert own_spec.resolve(url) == url
    assert own_spec.resolve(url, root=tmp_path) == url


def test_resolve_without_a_spec_file_uses_the_working_directory(tmp_path, monkeypatch):
    spec = DatasetSpec.model_validate(BASE)
    assert spec.path is None
    monkeypatch.chdir(tmp_path)
    assert spec.resolve("data/t.csv") == str((tmp_path / "data" / "t.csv").resolve())
