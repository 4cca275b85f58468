"""Where recent rows lie outside what the model was trained on.

Inside the range of its training rows a model's calibrated probability is a measured chance;
beyond it (a value above every training value, a category it never saw) it is the model's
guess: a tree ensemble repeats what it said at the edge, an encoder gives an unseen category no
weight. A performance estimate made from those probabilities (`estimation`, CBPE) inherits the
guess, and its interval, which holds the labels' noise and the calibration's, cannot cover it.
So each row is checked against the model's training domain, per feature, and a batch with too
many rows outside has its estimate marked unreliable (`drift.DriftThresholds.max_outside_share`).

The domain is read from the version's stored reference (a seeded sample of up to 50,000 of its
training rows, `drift.reference_sample`): for larger training sets a value between the sample's
extreme and the true one counts as outside, about 2 rows in 50,000 per feature when nothing
changed. Missing values are not outside: the model's imputer was fit for them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlassets.ml.bounded import clip_value

MISSING = "<missing>"  # a missing category: outside only when training never had one


@dataclass(frozen=True)
class Domain:
    """The training rows' range of each numeric feature and categories of each categorical one."""

    numeric: dict[str, tuple[float, float]]
    categorical: dict[str, frozenset[str]]

    @classmethod
    def of(cls, reference: pd.DataFrame, numeric: Sequence[str], categorical: Sequence[str]):
        """The domain of `reference` (training rows) for the given features."""
        ranges = {}
        for col in numeric:
            x = _finite(reference[col])
            if len(x):
                ranges[col] = (float(x.min()), float(x.max()))
        cats = {col: frozenset(_labels(reference[col]).unique()) for col in categorical}
        return cls(ranges, cats)

    def outside(self, rows: pd.DataFrame) -> Outside:
        """Which of `rows` hold a value outside the domain, and where (per feature)."""
        n = len(rows)
        any_outside = np.zeros(n, dtype=bool)
        masks: dict[str, np.ndarray] = {}
        detail: dict[str, dict[str, Any]] = {}
        for col, (lo, hi) in self.numeric.items():
            if col not in rows:
                continue
            x = pd.to_numeric(rows[col], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
            below, above = x < lo, x > hi  # NaN compares False: missing is not outside
            mask = below | above
            if mask.any():
                masks[col] = mask
                detail[col] = {
                    "kind": "numeric",
                    "range": [lo, hi],
                    "below": int(below.sum()),
                    "above": int(above.sum()),
                    "examples": [clip_value(float(v)) for v in np.unique(x[mask])[-3:]],
                }
        for col, seen in self.categorical.items():
            if col not in rows:
                continue
            values = _labels(rows[col])
            mask = ~values.isin(seen).to_numpy()
            if mask.any():
                masks[col] = mask
                detail[col] = {
                    "kind": "categorical",
                    "unseen": int(mask.sum()),
                    "examples": [clip_value(v) for v in pd.unique(values[mask])[:3]],
                }
        for mask in masks.values():
            any_outside |= mask
        return Outside(any_outside, masks, detail)


@dataclass
class Outside:
    """Per row, whether any feature lies outside the domain; per feature, the rows that do."""

    mask: np.ndarray
    by_feature: dict[str, np.ndarray] = field(default_factory=dict)
    detail: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return int(len(self.mask))

    @property
    def share(self) -> float:
        return float(self.mask.mean()) if len(self.mask) else 0.0

    def summary(self, rows: np.ndarray | None = None, top: int = 3) -> dict[str, Any]:
        """The share of rows outside (of all rows, or of the rows `rows` selects) and the
        features most often outside, each with its share and what lies outside: JSON-safe."""
        sel = np.ones(len(self.mask), dtype=bool) if rows is None else np.asarray(rows, bool)
        n = int(sel.sum())
        features = []
        for col, mask in self.by_feature.items():
            count = int(mask[sel].sum())
            if count:
                features.append({"feature": col, "share": count / n, **self.detail[col]})
        features.sort(key=lambda f: -f["share"])
        outside = int(self.mask[sel].sum())
        return {
            "rows": n,
            "outside_rows": outside,
            "share": outside / n if n else 0.0,
            "features": features[:top],
        }


def describe(summary: dict[str, Any]) -> str:
    """'34.1% of rows outside the training range: feature_2 above 845.2 (30.2%), ...'."""
    parts = []
    # the features that make the share: one row in thousands beyond an edge is chance
    shown = [f for i, f in enumerate(summary["features"]) if i == 0 or f["share"] >= 0.001]
    for f in shown:
        if f["kind"] == "numeric":
            lo, hi = f["range"]
            side = []
            if f["above"]:
                side.append(f"above {hi:.4g}")
            if f["below"]:
                side.append(f"below {lo:.4g}")
            parts.append(f"{f['feature']} {' or '.join(side)} ({f['share']:.1%})")
        else:
            shown = ", ".join(repr(v) for v in f["examples"])
            parts.append(f"{f['feature']} unseen {shown} ({f['share']:.1%})")
    where = f": {', '.join(parts)}" if parts else ""
    return f"{summary['share']:.1%} of rows outside the training range{where}"


def _finite(values: pd.Series) -> np.ndarray:
    x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    return x[np.isfinite(x)]


def _labels(values: pd.Series) -> pd.Series:
    """Categories as the encoder sees them (text), a missing one as `MISSING`."""
    from mlassets.ml.features import as_categories

    return as_categories(values).fillna(MISSING)


@dataclass
class Reliability:
    """Which batches' estimates can be trusted: those with at most `max_share` of their rows
    outside the training domain. `reliable` selects the rows of those batches."""

    max_share: float
    overall: dict[str, Any]
    batches: dict[str, dict[str, Any]]  # by name: the batch's `Outside.summary` and verdict
    reliable: np.ndarray

    @property
    def unreliable(self) -> list[str]:
        return [name for name, b in self.batches.items() if not b["reliable"]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_outside_share": self.max_share,
            "outside": self.overall,
            "unreliable_batches": self.unreliable,
            "batches": self.batches,
        }


def reliability(outside: Outside, batches: np.ndarray, max_share: float) -> Reliability:
    """Judge each batch (`batches`: each row's batch name) by its share of rows outside."""
    batches = np.asarray(batches).astype(str)
    verdicts, reliable = {}, np.ones(len(batches), dtype=bool)
    for name in sorted(set(batches)):
        rows = batches == name
        summary = outside.summary(rows)
        ok = summary["share"] <= max_share
        verdicts[name] = {**summary, "reliable": ok}
        if not ok:
            verdicts[name]["reason"] = f"{describe(summary)} (> {max_share:.0%})"
            reliable &= ~rows
    return Reliability(max_share, outside.summary(), verdicts, reliable)
