"""The dataset spec: a YAML file that describes a user's tabular data.

Everything data-specific in mlassets (columns, label, quality rules, features) comes from a
`DatasetSpec`, so one code location serves any binary-classification table.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

BUNDLED_SPECS = Path(__file__).parent / "specs"
DEFAULT_SPEC = BUNDLED_SPECS / "fraud.yaml"

ColumnType = Literal["integer", "float", "string", "category", "datetime", "boolean"]

# Derived features known by name: each lists the spec roles or columns it needs.
DERIVED_FEATURES: dict[str, tuple[str, ...]] = {
    "days_since_signup": ("timestamp", "signup_date"),
    "purchase_frequency": ("timestamp", "signup_date", "total_purchases"),
}


class SpecError(ValueError):
    """A dataset spec that cannot be used; the message names the file and the key."""


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


class DatasetSpec(_Strict):
    """A validated dataset spec (see DESIGN.md, "The dataset spec")."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    source: str
    landing: str | None = None
    label: LabelSpec
    id: str | None = None
    timestamp: str | None = None
    sensitive: list[str] = Field(default_factory=list)
    min_rows: int = Field(default=1, ge=1)
    columns: dict[str, ColumnSpec]
    features: FeatureSpec
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
    def numeric_inputs(self) -> list[str]:
        return [*self.features.numeric, *self.features.derived]

    def resolve(self, location: str, root: str | Path | None = None) -> str:
        """Resolve a source or landing location: URLs stay, relative paths join `root`.

        `root` defaults to the spec file's folder, so a spec can sit beside its data.
        """
        if "://" in location or os.path.isabs(location):
            return location
        base = Path(root) if root is not None else (self.path.parent if self.path else Path.cwd())
        return str((base / location).resolve())


def _format_error(path: Path, err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        got = e.get("input")
        shown = "" if isinstance(got, dict) or e["type"] == "missing" else f" (got {got!r})"
        lines.append(f"  {key}: {msg}{shown}")
    return f"dataset spec {path} is invalid:\n" + "\n".join(lines)


def load_spec(path: str | Path | None = None) -> DatasetSpec:
    """Load and validate a dataset spec; `None` means `$MLASSETS_SPEC` or the bundled fraud spec.

    Raises `SpecError` naming the file and every offending key.
    """
    path = Path(path or os.environ.get("MLASSETS_SPEC") or DEFAULT_SPEC).expanduser().resolve()
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError as e:
        raise SpecError(f"dataset spec {path} does not exist") from e
    except yaml.YAMLError as e:
        raise SpecError(f"dataset spec {path} is not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise SpecError(f"dataset spec {path}: expected a mapping at the top level")
    try:
        return DatasetSpec.model_validate({**raw, "path": path})
    except ValidationError as e:
        raise SpecError(_format_error(path, e)) from None
