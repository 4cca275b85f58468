"""The dataset spec: loading, validation that names the offending key, and path resolution."""

import copy
import time
from pathlib import Path

import pytest
import yaml

import mlassets.settings  # noqa: F401
from mlassets import spec
from mlassets.ml import bounded
from mlassets.spec import DEFAULT_SPEC, DatasetSpec, SpecError, load_spec

pytestmark = pytest.mark.unit

BASE = yaml.safe_load(DEFAULT_SPEC.read_text())


def write_spec(tmp_path: Path, raw, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml: megabyte values in ms
    path.write_text(raw if isinstance(raw, str) else yaml.dump(raw, Dumper=dumper, sort_keys=False))
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
    assert own_spec.resolve("data/../x.csv") == str((tmp_path / "project/specs/x.csv").resolve())


def test_resolve_joins_a_relative_path_to_an_explicit_root(own_spec, tmp_path):
    root = tmp_path / "elsewhere"
    assert own_spec.resolve("data/landing", root=root) == str((root / "data/landing").resolve())
    assert own_spec.resolve("data/landing", root=str(root)) == str(
        (root / "data/landing").resolve()
    )


def test_resolve_accepts_an_absolute_path_inside_the_folder(own_spec, tmp_path):
    inside = tmp_path / "project" / "specs" / "data" / "t.csv"
    assert own_spec.resolve(str(inside)) == str(inside.resolve())


def test_resolve_without_a_spec_file_uses_the_working_directory(tmp_path, monkeypatch):
    spec = DatasetSpec.model_validate(BASE)
    assert spec.path is None
    monkeypatch.chdir(tmp_path)
    assert spec.resolve("data/t.csv") == str((tmp_path / "data" / "t.csv").resolve())


# -- sources are confined to the spec's folder (or the data root) unless allow_external -----------


def confined_error(spec: DatasetSpec, location: str, root=None) -> str:
    with pytest.raises(SpecError) as info:
        spec.resolve(location, root=root)
    message = str(info.value)
    assert len(message.encode()) <= bounded.MESSAGE_BYTES
    assert "allow_external: true" in message, "the message says how to opt in"
    return message


def spec_with(folder: Path, **changes) -> DatasetSpec:
    folder.mkdir(parents=True, exist_ok=True)
    return load_spec(write_spec(folder, {**BASE, **changes}))


@pytest.mark.parametrize(
    "url",
    ["file:///etc/os-release#.csv", "s3://b/k.parquet", "memory://x.csv", "https://h/t.csv"],
)
def test_a_url_source_is_refused_naming_the_key_and_the_value(tmp_path, url):
    spec = spec_with(tmp_path / "p", source=url)
    message = confined_error(spec, spec.source)
    assert "`source`" in message and repr(url) in message
    assert str(spec.path) in message, "the message names the spec file"


def test_a_landing_outside_the_folder_is_refused_naming_landing(tmp_path):
    spec = spec_with(tmp_path / "p", landing="../incoming")
    message = confined_error(spec, spec.landing)
    assert "`landing`" in message and "'../incoming'" in message


@pytest.mark.parametrize("location", ["../data/x.csv", "data/../../x.csv", "/etc/os-release.csv"])
def test_a_path_leaving_the_folder_is_refused(tmp_path, location):
    spec = spec_with(tmp_path / "p", source=location)
    message = confined_error(spec, spec.source)
    assert "`source`" in message and "outside" in message


def test_a_path_leaving_the_data_root_is_refused(own_spec, tmp_path):
    """The bundled spec resolves against the data root (the home): the same rule holds there."""
    root = tmp_path / "home"
    assert own_spec.resolve("data/t.csv", root=root) == str((root / "data/t.csv").resolve())
    confined_error(own_spec, "../t.csv", root=root)


def test_a_symlink_out_of_the_folder_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "t.csv").write_text("x,y\n1,0\n")
    spec = spec_with(tmp_path / "p", source="data/t.csv", landing="drop")
    (tmp_path / "p" / "data").mkdir()
    (tmp_path / "p" / "data" / "t.csv").symlink_to(outside / "t.csv")
    (tmp_path / "p" / "drop").symlink_to(outside, target_is_directory=True)
    assert "`source`" in confined_error(spec, spec.source)
    assert "`landing`" in confined_error(spec, spec.landing)


def test_a_symlink_inside_the_folder_is_followed(tmp_path):
    spec = spec_with(tmp_path / "p", source="current.csv")
    (tmp_path / "p" / "v2.csv").write_text("x,y\n1,0\n")
    (tmp_path / "p" / "current.csv").symlink_to(tmp_path / "p" / "v2.csv")
    assert spec.resolve(spec.source) == str((tmp_path / "p" / "v2.csv").resolve())


def test_a_huge_location_is_refused_bounded(tmp_path):
    spec = spec_with(tmp_path / "p", source="../" + "x" * 1_000_000 + ".csv")
    message = confined_error(spec, spec.source)
    assert "`source`" in message and "cut:" in message


def test_allow_external_lets_an_absolute_path_elsewhere_and_urls_through(tmp_path):
    elsewhere = tmp_path / "shared" / "t.csv"
    spec = spec_with(tmp_path / "p", source=str(elsewhere), allow_external=True)
    assert spec.allow_external is True
    assert spec.resolve(spec.source) == str(elsewhere)
    assert spec.resolve("../up/t.csv") == str((tmp_path / "up" / "t.csv").resolve())
    for url in ("s3://b/k.parquet", "memory://x.csv", "gs://bucket/dir/t.csv", "file:///tmp/t.pq"):
        assert spec.resolve(url) == url
        assert spec.resolve(url, root=tmp_path) == url


def test_allow_external_must_be_a_boolean(tmp_path):
    message = spec_error(tmp_path, {**BASE, "allow_external": "sometimes"})
    assert "allow_external" in message


@pytest.mark.parametrize(("key", "value"), [("max_rows", 0), ("max_bytes", -1)])
def test_ceilings_must_be_positive(tmp_path, key, value):
    message = spec_error(tmp_path, {**BASE, key: value})
    assert key in message and f"(got {value})" in message


def test_ceilings_default_to_none_and_load_when_set(tmp_path):
    assert load_spec(DEFAULT_SPEC).max_rows is None and load_spec(DEFAULT_SPEC).max_bytes is None
    spec = load_spec(write_spec(tmp_path, {**BASE, "max_rows": 10, "max_bytes": 1000}))
    assert (spec.max_rows, spec.max_bytes) == (10, 1000)


# -- every spec error is bounded -------------------------------------------------------------------

BILLION_LAUGHS = """name: fraud_detection
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
sensitive: *i
"""


def test_an_alias_bomb_is_refused_quickly_naming_the_key(tmp_path):
    """1.6 KB of nested aliases is 9**9 values once expanded (a 580 MB error message before):
    refused from the parsed node graph, before any value is built."""
    start = time.perf_counter()
    message = spec_error(tmp_path, BILLION_LAUGHS)
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0, f"took {elapsed:.2f}s"
    assert "key `g`" in message and "YAML aliases" in message
    assert f"{spec.MAX_SPEC_VALUES:,}" in message
    assert len(message.encode()) <= bounded.MESSAGE_BYTES


def test_a_self_referencing_alias_is_refused(tmp_path):
    message = spec_error(tmp_path, "name: x\nsensitive: &s [a, *s]\n")
    assert "key `sensitive`" in message and "contains it" in message


def test_modest_aliases_still_work(tmp_path):
    text = DEFAULT_SPEC.read_text().replace(
        "feature_2: {type: float, min: 0}", "feature_2: &positive {type: float, min: 0}"
    )
    text = text.replace("total_purchases: {type: integer, min: 0}", "total_purchases: *positive")
    assert "*positive" in text
    assert load_spec(write_spec(tmp_path, text)).columns["total_purchases"].type == "float"


MEGABYTE = "x" * 1_000_000


def _long_type(r):
    r["columns"]["feature_1"]["type"] = MEGABYTE


def _long_label_column(r):
    r["label"]["column"] = MEGABYTE


def _long_name(r):
    r["name"] = MEGABYTE + " !"


def _long_column_name(r):
    r["columns"][MEGABYTE] = {"type": "decimal"}


def _long_list(r):
    r["sensitive"] = [MEGABYTE] * 3


def _many_errors(r):
    for i in range(500):
        r[f"colour_{i}"] = MEGABYTE[:5000]


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (_long_type, "columns.feature_1.type"),
        (_long_label_column, "label.column"),
        (_long_name, "name"),
        (_long_column_name, "columns.xxxx"),
        (_long_list, "sensitive[0]"),
        (_many_errors, "colour_0"),
    ],
    ids=lambda v: v.__name__.strip("_") if callable(v) else "",
)
def test_a_megabyte_value_gives_a_bounded_error_naming_the_key(tmp_path, change, key):
    message = spec_error(tmp_path, mutated(change))
    assert key in message
    assert len(message.encode()) <= bounded.MESSAGE_BYTES
    assert "cut:" in message or "more" in message, "a cut value says so"


def test_a_spec_file_over_the_size_limit_is_refused_unread(tmp_path, monkeypatch):
    monkeypatch.setattr(spec, "MAX_SPEC_BYTES", 1000)
    message = spec_error(tmp_path, mutated(lambda r: r.update(name="y" * 2000)))
    assert "more than the 1,000" in message


def test_a_binary_spec_file_is_refused(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_bytes(b"name: \xff\xfe\x00" * 100)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert str(path) in str(info.value) and len(str(info.value).encode()) < 2000


def test_invalid_yaml_with_a_long_line_is_bounded(tmp_path):
    message = spec_error(tmp_path, "name: [" + "x" * 1_000_000 + "\n: :\n")
    assert "not valid YAML" in message
    assert len(message.encode()) <= bounded.MESSAGE_BYTES


def test_spec_error_clips_whatever_it_is_given():
    assert len(str(SpecError("x" * 10**6)).encode()) <= bounded.MESSAGE_BYTES
