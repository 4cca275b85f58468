"""The dataset spec: a YAML file that describes a user's tabular data.

Everything data-specific in mlassets (columns, label, quality rules, features) comes from a
`DatasetSpec`, so one code location serves any binary-classification table.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, NoReturn

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mlassets.ml.bounded import VALUE_BYTES, clip, clip_value

BUNDLED_SPECS = Path(__file__).parent / "specs"
DEFAULT_SPEC = BUNDLED_SPECS / "fraud.yaml"

ColumnType = Literal["integer", "float", "string", "category", "datetime", "boolean"]

# Derived features known by name: each lists the spec roles or columns it needs.
DERIVED_FEATURES: dict[str, tuple[str, ...]] = {
    "days_since_signup": ("timestamp", "signup_date"),
    "purchase_frequency": ("timestamp", "signup_date", "total_purchases"),
}


# A spec is a page of YAML: a file larger than this, or whose aliases expand to more values than
# this, is refused before it is built (a 1.6 KB file of nested aliases expands to 10**9 values).
MAX_SPEC_BYTES = 8 * 1024**2
MAX_SPEC_VALUES = 1_000_000
# Offending keys listed in one error; the rest are counted.
MAX_REPORTED_ERRORS = 20


class SpecError(ValueError):
    """A dataset spec that cannot be used; the message names the file and the key.

    The message is clipped to `bounded.MESSAGE_BYTES` whatever it quotes."""

    def __init__(self, message: object) -> None:
        super().__init__(clip(str(message)))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LabelSpec(_Strict):
    column: str
    positive: Any = 1


class ColumnSpec(_Strict):
    type: ColumnType
    nullable: bool = True
    unique: bool = False
    min: float | None = None
    max: float | None = None
    values: list[Any] | None = None
    # numeric columns must hold finite values (no inf/-inf) unless this is set
    allow_infinite: bool = False

    @model_validator(mode="after")
    def _check_bounds(self) -> ColumnSpec:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        if (self.min is not None or self.max is not None) and self.type not in ("integer", "float"):
            raise ValueError(f"min/max only apply to integer or float columns, not {self.type}")
        return self


class FeatureSpec(_Strict):
    numeric: list[str] = Field(default_factory=list)
    categorical: list[str] = Field(default_factory=list)
    derived: list[str] = Field(default_factory=list)


class GateSpec(_Strict):
    """The model's own gate limits (`mlassets.ml.gates`): any of them, `null` turning one off;
    the others keep their defaults, and a run's `EvaluationConfig` can still set any."""

    min_accuracy: float | None = Field(default=None, ge=0, le=1)
    min_precision: float | None = Field(default=None, ge=0, le=1)
    min_recall: float | None = Field(default=None, ge=0, le=1)
    min_f1: float | None = Field(default=None, ge=0, le=1)
    min_roc_auc: float | None = Field(default=None, ge=0, le=1)
    min_pr_auc: float | None = Field(default=None, ge=0, le=1)
    min_lift: float | None = Field(default=None, ge=-1, le=1)
    tolerance: float | None = Field(default=None, ge=-1, le=1)
    max_equalized_odds: float | None = Field(default=None, ge=0, le=1)
    max_demographic_parity: float | None = Field(default=None, ge=0, le=1)


class DatasetSpec(_Strict):
    """A validated dataset spec (see DESIGN.md, "The dataset spec")."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", max_length=200)  # a Dagster/MLflow name
    source: str
    landing: str | None = None
    # a folder of label files (`id`, label column; CSV or Parquet) that arrive after the rows:
    # joined to the landed rows by id (`mlassets.ml.labels`)
    labels: str | None = None
    label: LabelSpec
    id: str | None = None
    timestamp: str | None = None
    sensitive: list[str] = Field(default_factory=list)
    min_rows: int = Field(default=1, ge=1)
    # ceilings on what a source or landed batch may hold (rows; uncompressed bytes: a CSV's text
    # after decompression, a Parquet file's column data as its footer records); None takes the
    # default in mlassets.ml.defaults
    max_rows: int | None = Field(default=None, ge=1)
    max_bytes: int | None = Field(default=None, ge=1)
    # a source or landing folder outside the spec's folder (an absolute path elsewhere, a URL such
    # as s3://... or file://...) is refused unless the spec opts in
    allow_external: bool = False
    columns: dict[str, ColumnSpec]
    features: FeatureSpec
    # the model's gate limits; unset ones take the defaults (`mlassets.ml.gates`)
    gates: GateSpec = Field(default_factory=GateSpec)
    path: Path | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _check_references(self) -> DatasetSpec:
        known = set(self.columns)
        refs: list[tuple[str, str | None]] = [
            ("label.column", self.label.column),
            ("id", self.id),
            ("timestamp", self.timestamp),
        ]
        refs += [(f"sensitive[{i}]", c) for i, c in enumerate(self.sensitive)]
        refs += [(f"features.numeric[{i}]", c) for i, c in enumerate(self.features.numeric)]
        refs += [(f"features.categorical[{i}]", c) for i, c in enumerate(self.features.categorical)]
        for key, col in refs:
            if col is not None and col not in known:
                raise ValueError(f"{key}: column {col!r} is not in columns ({sorted(known)})")
        if self.label.column in self.feature_columns:
            raise ValueError(
                f"features: the label column {self.label.column!r} cannot be a feature"
            )
        if not self.feature_columns:
            raise ValueError("features: at least one numeric, categorical or derived feature")
        if self.timestamp and self.columns[self.timestamp].type != "datetime":
            raise ValueError(f"timestamp: column {self.timestamp!r} must have type datetime")
        for i, name in enumerate(self.features.derived):
            if name not in DERIVED_FEATURES:
                raise ValueError(
                    f"features.derived[{i}]: unknown derived feature {name!r} "
                    f"(known: {sorted(DERIVED_FEATURES)})"
                )
            for need in DERIVED_FEATURES[name]:
                have = self.timestamp if need == "timestamp" else need
                if have is None or have not in known:
                    raise ValueError(
                        f"features.derived[{i}]: {name!r} needs the "
                        f"{'timestamp key' if need == 'timestamp' else f'column {need!r}'}"
                    )
        if self.labels is not None:
            if self.id is None:
                raise ValueError("labels: label files join landed rows by id; set the `id` key")
            if self.landing is None:
                raise ValueError("labels: label files join landed batches; set `landing` too")
            if os.path.normpath(self.labels) == os.path.normpath(self.landing):
                raise ValueError(
                    f"labels: {self.labels!r} is the landing folder; label files need their own "
                    "(a label file there would be read as a batch)"
                )
        dup = {c for c in self.feature_columns if self.feature_columns.count(c) > 1}
        if dup:
            raise ValueError(f"features: columns listed twice: {sorted(dup)}")
        return self

    @property
    def input_columns(self) -> list[str]:
        """The columns the model reads: numeric, derived, then categorical features."""
        return [*self.features.numeric, *self.features.derived, *self.features.categorical]

    @property
    def feature_columns(self) -> list[str]:
        return self.input_columns

    @property
    def model_inputs(self) -> list[str]:
        """The raw columns the registered model reads (its signature), in the spec's order: the
        numeric and categorical features and the columns the derived ones are computed from.
        The model computes its derived features itself, so a consumer sends rows as they land."""
        needed = {*self.features.numeric, *self.features.categorical}
        for name in self.features.derived:
            needed |= {self.timestamp if n == "timestamp" else n for n in DERIVED_FEATURES[name]}
        return [c for c in self.columns if c in needed]

    @property
    def numeric_inputs(self) -> list[str]:
        return [*self.features.numeric, *self.features.derived]

    def resolve(self, location: str, root: str | Path | None = None) -> str:
        """Resolve a source or landing location against `root` (default: the spec file's folder).

        The location must stay inside that folder: a URL, an absolute path elsewhere, or a `..` or
        symlink that leads out of it is refused (`SpecError` naming the key and the value) unless
        the spec sets `allow_external: true`; otherwise a spec could read any file the process
        can (`file:///etc/os-release#.csv`) and show it in a check message. With
        `allow_external`, URLs and absolute paths pass unchanged.
        """
        key = next(
            (k for k in ("source", "landing", "labels") if location == getattr(self, k)), None
        )
        base = Path(root) if root is not None else (self.path.parent if self.path else Path.cwd())
        is_url = "://" in location
        if self.allow_external and (is_url or os.path.isabs(location)):
            return location
        if is_url:
            self._refuse(key, location, f"is a URL; sources must lie in {base}")
        try:
            folder = base.resolve()
            target = (base / location).resolve()
        except (OSError, RuntimeError) as e:  # a name too long, a symlink loop
            self._refuse(key, location, f"cannot be resolved: {e}")
        if self.allow_external or target.is_relative_to(folder):
            return str(target)
        self._refuse(key, location, f"leads to {target}, outside {folder}")

    def _refuse(self, key: str | None, location: str, why: str) -> NoReturn:
        where = f"dataset spec {self.path}" if self.path else "dataset spec"
        name = f"`{key}`" if key else "location"
        raise SpecError(
            f"{where}: {name} {clip_value(location)!r} {clip(why, VALUE_BYTES * 2)}. "
            "Put the data in the spec's folder, or set `allow_external: true` in the spec to "
            "read it from elsewhere."
        )


def _format_error(path: Path, err: ValidationError) -> str:
    """One line per offending key (at most `MAX_REPORTED_ERRORS`), each value clipped: a key can
    hold a megabyte, and the message must stay readable (and bounded: `SpecError` clips it)."""
    errors = err.errors()
    lines = []
    for e in errors[:MAX_REPORTED_ERRORS]:
        key = ".".join(str(clip_value(str(p), VALUE_BYTES // 2)) for p in e["loc"]) or "(top level)"
        msg = clip(e["msg"].removeprefix("Value error, "), VALUE_BYTES * 3)
        got = e.get("input")
        shown = (
            ""
            if isinstance(got, dict) or e["type"] == "missing"
            else f" (got {clip(_short_repr(got), VALUE_BYTES * 6)})"
        )
        lines.append(f"  {key}: {msg}{shown}")
    if len(errors) > MAX_REPORTED_ERRORS:
        lines.append(f"  ... and {len(errors) - MAX_REPORTED_ERRORS} more")
    return f"dataset spec {path} is invalid:\n" + "\n".join(lines)


def _short_repr(value: Any) -> str:
    """`repr` of a spec value without building a huge string first (a list of long strings)."""
    if isinstance(value, list | tuple):
        head = ", ".join(_short_repr(v) for v in value[:5])
        return f"[{head}{', ...' if len(value) > 5 else ''}]"
    return repr(clip_value(value))


class _SpecLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml when installed
    """YAML's safe loader; `load_spec` checks the composed node graph before building values."""


class _Cycle(Exception):
    """An alias inside the value it refers to: an infinite spec."""


def _expanded_size(node: yaml.Node, sizes: dict[int, int], open_: set[int]) -> int:
    """How many values `node` becomes once its aliases are expanded (each shared node counted
    once per use, but computed once: linear in the file, not in the expansion)."""
    known = sizes.get(id(node))
    if known is not None:
        return known
    if id(node) in open_:
        raise _Cycle("a YAML alias refers to a value that contains it")
    open_.add(id(node))
    size = 1
    if isinstance(node, yaml.SequenceNode):
        size += sum(_expanded_size(child, sizes, open_) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            size += _expanded_size(k, sizes, open_) + _expanded_size(v, sizes, open_)
    open_.discard(id(node))
    sizes[id(node)] = size
    return size


def _parse_yaml(path: Path, text: str) -> Any:
    """The spec's YAML as Python values, refusing a file whose aliases expand past
    `MAX_SPEC_VALUES` (or refer to themselves) before anything is built from it."""
    loader = _SpecLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        sizes: dict[int, int] = {}
        open_: set[int] = set()
        parts = node.value if isinstance(node, yaml.MappingNode) else [(None, node)]
        for key, value in parts:
            name = (
                str(clip_value(key.value, VALUE_BYTES))
                if isinstance(key, yaml.ScalarNode)
                else "(top level)"
            )
            try:
                size = _expanded_size(value, sizes, open_)
            except _Cycle as e:
                raise SpecError(f"dataset spec {path}: key `{name}`: {e}") from None
            except RecursionError:
                raise SpecError(f"dataset spec {path}: key `{name}` nests too deeply") from None
            if size > MAX_SPEC_VALUES:
                raise SpecError(
                    f"dataset spec {path}: key `{name}` expands (through YAML aliases) to "
                    f"{size:,} values, more than the {MAX_SPEC_VALUES:,} a spec may hold"
                )
        if _expanded_size(node, sizes, open_) > MAX_SPEC_VALUES:
            raise SpecError(
                f"dataset spec {path}: expands (through YAML aliases) to more than "
                f"{MAX_SPEC_VALUES:,} values"
            )
        return loader.construct_document(node)
    finally:
        loader.dispose()


def load_spec(path: str | Path | None = None) -> DatasetSpec:
    """Load and validate a dataset spec; `None` means `$MLASSETS_SPEC` or the bundled fraud spec.

    Raises `SpecError` naming the file and every offending key, bounded in size: a file over
    `MAX_SPEC_BYTES`, or whose YAML aliases expand past `MAX_SPEC_VALUES`, is refused unread.
    """
    path = Path(path or os.environ.get("MLASSETS_SPEC") or DEFAULT_SPEC).expanduser().resolve()
    try:
        size = path.stat().st_size
        if size > MAX_SPEC_BYTES:
            raise SpecError(
                f"dataset spec {path} is {size:,} bytes, more than the {MAX_SPEC_BYTES:,} a spec "
                "may hold"
            )
        raw = _parse_yaml(path, path.read_text())
    except FileNotFoundError as e:
        raise SpecError(f"dataset spec {path} does not exist") from e
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"dataset spec {path} cannot be read: {e}") from e
    except yaml.YAMLError as e:
        raise SpecError(f"dataset spec {path} is not valid YAML: {clip(str(e), 1000)}") from e
    if not isinstance(raw, dict):
        raise SpecError(f"dataset spec {path}: expected a mapping at the top level")
    try:
        return DatasetSpec.model_validate({**raw, "path": path})
    except ValidationError as e:
        raise SpecError(_format_error(path, e)) from None


def spec_files(folder: str | Path) -> list[Path]:
    """The `*.yaml` / `*.yml` specs of a folder (`MLASSETS_SPECS`), in name order. A folder that
    does not exist or holds none is an error: a code location with no model says nothing."""
    root = Path(folder).expanduser().resolve()
    if not root.is_dir():
        raise SpecError(f"MLASSETS_SPECS: {root} is not a folder of dataset specs")
    files = sorted(p for p in root.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    if not files:
        raise SpecError(f"MLASSETS_SPECS: {root} holds no dataset spec (*.yaml)")
    return files


def find_spec(folder: str | Path, name: str) -> DatasetSpec:
    """The spec named `name` in a folder of specs (read now: an edited file is seen by the next
    run). A folder where it no longer loads says so, naming the files that failed."""
    failed = []
    for path in spec_files(folder):
        try:
            spec = load_spec(path)
        except SpecError as e:
            failed.append(str(e))
            continue
        if spec.name == name:
            return spec
    why = f"; specs that do not load: {clip('; '.join(failed), 2000)}" if failed else ""
    raise SpecError(f"MLASSETS_SPECS: no dataset spec named {name!r} in {folder}{why}")
