"""Fairness across sensitive groups: per-group rates, gated differences, a verdict naming groups.

For each sensitive column we report every group (count, selection rate, TPR, FPR, precision) with
fairlearn's MetricFrame, and gate two differences between groups: demographic parity (selection
rates) and equalized odds (the worse of the TPR and FPR gaps). Groups smaller than a minimum size
are reported but left out of the gated differences: a rate over a handful of rows is noise, and
would fail (or pass) the gate by chance.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

MISSING = "(missing)"
GROUP_METRICS = ("count", "selection_rate", "tpr", "fpr", "precision")


@dataclass
class ColumnFairness:
    """One sensitive column: the per-group table, the gated differences and who breaks them."""

    column: str
    groups: pd.DataFrame  # index: group; count, selection_rate, tpr, fpr, precision, gated
    demographic_parity_difference: float | None
    equalized_odds_difference: float | None
    excluded: list[str]
    violations: list[str] = field(default_factory=list)
    offenders: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.violations

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (for metadata, the MLflow run and the HTML report)."""
        groups = self.groups.reset_index().rename(columns={"index": "group"})
        return {
            "column": self.column,
            "passed": self.passed,
            "demographic_parity_difference": self.demographic_parity_difference,
            "equalized_odds_difference": self.equalized_odds_difference,
            "excluded_groups": self.excluded,
            "violations": self.violations,
            "offending_groups": self.offenders,
            "groups": groups.to_dict(orient="records"),
        }


@dataclass
class FairnessResult:
    """The verdict over all sensitive columns against the configured maxima."""

    columns: list[ColumnFairness]
    max_demographic_parity: float | None
    max_equalized_odds: float | None
    min_group_size: int

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.columns)

    @property
    def offenders(self) -> dict[str, list[str]]:
        """Offending groups by column (only columns that fail)."""
        return {c.column: c.offenders for c in self.columns if c.offenders}

    @property
    def message(self) -> str:
        if not self.columns:
            return "no sensitive columns: nothing to check"
        lines = [v for c in self.columns for v in c.violations]
        if not lines:
            checked = ", ".join(c.column for c in self.columns)
            return (
                f"fairness passes on {checked} (demographic parity <= "
                f"{self.max_demographic_parity}, equalized odds <= {self.max_equalized_odds}, "
                f"groups of at least {self.min_group_size} rows)"
            )
        return "fairness FAILS: " + "; ".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "message": self.message,
            "max_demographic_parity": self.max_demographic_parity,
            "max_equalized_odds": self.max_equalized_odds,
            "min_group_size": self.min_group_size,
            "offending_groups": self.offenders,
            "columns": [c.as_dict() for c in self.columns],
        }


def _precision(y_true, y_pred) -> float:
    from sklearn.metrics import precision_score

    return float(precision_score(y_true, y_pred, zero_division=0))


def group_table(y_true, y_pred, sensitive: pd.Series) -> pd.DataFrame:
    """Per-group count, selection rate, TPR, FPR and precision (fairlearn MetricFrame)."""
    from fairlearn.metrics import (
        MetricFrame,
        count,
        false_positive_rate,
        selection_rate,
        true_positive_rate,
    )

    frame = MetricFrame(
        metrics={
            "count": count,
            "selection_rate": selection_rate,
            "tpr": true_positive_rate,
            "fpr": false_positive_rate,
            "precision": _precision,
        },
        y_true=np.asarray(y_true),
        y_pred=np.asarray(y_pred),
        sensitive_features=sensitive,
    )
    table = frame.by_group.copy()
    table.index = table.index.map(str)
    table.index.name = None
    table["count"] = table["count"].astype(int)
    for col in ("selection_rate", "tpr", "fpr", "precision"):
        table[col] = table[col].astype(float)
    return table


def _outliers(values: pd.Series) -> list[str]:
    """The group(s) furthest from the median of `values`: who makes the gap.

    With two groups both are equally far, so both are named.
    """
    distance = (values - values.median()).abs()
    return sorted(str(g) for g in distance.index[np.isclose(distance, distance.max())])


def _fmt_rates(groups: pd.DataFrame, col: str, names: list[str]) -> str:
    return ", ".join(f"{g} {groups.loc[g, col]:.3f}" for g in names)


def column_fairness(
    y_true,
    y_pred,
    sensitive: pd.Series,
    *,
    min_group_size: int = 30,
    max_demographic_parity: float | None = 0.1,
    max_equalized_odds: float | None = 0.1,
) -> ColumnFairness:
    """Fairness over one sensitive column; a maximum of None reports without gating."""
    from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference

    name = str(sensitive.name)
    s = pd.Series(sensitive).astype(object).where(pd.notna(sensitive), MISSING).astype(str)
    s = s.reset_index(drop=True)
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    groups = group_table(y_true, y_pred, s.rename(name))
    groups["gated"] = groups["count"] >= min_group_size
    excluded = sorted(groups.index[~groups["gated"]])
    gated = groups[groups["gated"]]
    keep = s.isin(gated.index).to_numpy()

    dp = eo = None
    if len(gated) >= 2:
        kw = dict(sensitive_features=s[keep])
        dp = float(demographic_parity_difference(y_true[keep], y_pred[keep], **kw))
        eo = float(equalized_odds_difference(y_true[keep], y_pred[keep], **kw))

    violations: list[str] = []
    offenders: list[str] = []
    if dp is not None and max_demographic_parity is not None and dp > max_demographic_parity:
        who = _outliers(gated["selection_rate"])
        offenders += who
        violations.append(
            f"{name}: demographic parity difference {dp:.3f} > {max_demographic_parity} "
            f"(selection rate {_fmt_rates(gated, 'selection_rate', who)}; "
            f"median {gated['selection_rate'].median():.3f})"
        )
    if eo is not None and max_equalized_odds is not None and eo > max_equalized_odds:
        tpr_gap = gated["tpr"].max() - gated["tpr"].min()
        fpr_gap = gated["fpr"].max() - gated["fpr"].min()
        rate = "tpr" if tpr_gap >= fpr_gap else "fpr"
        who = _outliers(gated[rate])
        offenders += [g for g in who if g not in offenders]
        violations.append(
            f"{name}: equalized odds difference {eo:.3f} > {max_equalized_odds} "
            f"({rate.upper()} {_fmt_rates(gated, rate, who)}; median {gated[rate].median():.3f})"
        )
    return ColumnFairness(name, groups, dp, eo, excluded, violations, offenders)


def fairness_report(
    y_true,
    y_pred,
    sensitive: pd.DataFrame | pd.Series,
    *,
    min_group_size: int = 30,
    max_demographic_parity: float | None = 0.1,
    max_equalized_odds: float | None = 0.1,
) -> FairnessResult:
    """Fairness of predictions `y_pred` over each sensitive column, with a verdict.

    `sensitive` holds the sensitive columns for the same rows as `y_true` (e.g. the test frame's
    `spec.sensitive` columns, which need not be model inputs). Missing values form their own
    group. The verdict fails when a gated difference exceeds its maximum and names the group(s)
    that make the gap.
    """
    frame = sensitive.to_frame() if isinstance(sensitive, pd.Series) else sensitive
    if len(frame) != len(y_true):
        raise ValueError(f"sensitive has {len(frame)} rows, labels have {len(y_true)}")
    columns = [
        column_fairness(
            y_true,
            y_pred,
            frame[col],
            min_group_size=min_group_size,
            max_demographic_parity=max_demographic_parity,
            max_equalized_odds=max_equalized_odds,
        )
        for col in frame.columns
    ]
    return FairnessResult(columns, max_demographic_parity, max_equalized_odds, min_group_size)
