"""The gates' limits, where each comes from, the trivial baseline, and what to change when one fails.

A model's gates belong to it: its spec's `gates` sets any limit, a run's `EvaluationConfig` any
limit for that run, and the rest take defaults relative to what the table allows (no absolute
floor on accuracy or F1: the challenger must beat a trivial baseline by `min_lift`, and the
production model; fairness as before). So one spec can ask for F1 >= 0.85 and another, on a
harder table, accept what beats predicting the majority by a margin.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from mlassets.ml.records import EvaluationReport

# Every gate limit by name: what a spec's `gates` and `EvaluationConfig` may set.
FLOORS = tuple(f"min_{m}" for m in ("accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc"))
LIMITS = (*FLOORS, "min_lift", "tolerance", "max_equalized_odds", "max_demographic_parity")
SPEC, RUN, DEFAULT = "the spec's gates", "the run config", "the default"


def resolve(
    run: Mapping[str, Any], spec_gates: Any, defaults: Any
) -> tuple[dict[str, Any], dict[str, str]]:
    """Each limit's value and where it came from: the run config's when it sets one (not None),
    else the spec's when its `gates` name it (`null` there turns a gate off), else the default
    (`defaults`: `EvaluationSettings`)."""
    given = spec_gates.model_fields_set if spec_gates is not None else set()
    values, sources = {}, {}
    for name in LIMITS:
        if run.get(name) is not None:
            values[name], sources[name] = run[name], RUN
        elif name in given:
            values[name], sources[name] = getattr(spec_gates, name), SPEC
        else:
            values[name], sources[name] = getattr(defaults, name), DEFAULT
    return values, sources


# What predicting without looking at a row scores on each metric: every row positive for F1
# (2p / (1 + p), the best constant), the majority class for accuracy, the prevalence for
# precision, recall (at random, at that rate) and PR AUC, one half for ROC AUC.
TRIVIAL = {
    "f1": ("predicting every row positive", lambda p: 2 * p / (1 + p) if p > 0 else 0.0),
    "accuracy": ("predicting the majority class", lambda p: max(p, 1 - p)),
    "precision": ("predicting at random at the positive rate", lambda p: p),
    "recall": ("predicting at random at the positive rate", lambda p: p),
    "roc_auc": ("a constant score", lambda p: 0.5),
    "pr_auc": ("a constant score", lambda p: p),
}


def beats_baseline(
    metrics: Mapping[str, float], y: np.ndarray, primary: str, min_lift: float | None
) -> dict[str, Any]:
    """The `beats_baseline` gate: the primary metric at least `min_lift` above what a trivial
    predictor scores on the same test rows (None: reported, not gated)."""
    how, of = TRIVIAL[primary]
    p = float(np.mean(np.asarray(y) == 1)) if len(y) else 0.0
    baseline = float(of(p))
    value = float(metrics[primary])
    required = None if min_lift is None else baseline + float(min_lift)
    passed = required is None or value >= required
    lift = value - baseline
    verdict = (
        "reported, not gated (min_lift unset)"
        if required is None
        else f"{'>=' if passed else '<'} {min_lift:g} required"
    )
    return {
        "name": "beats_baseline",
        "metric": primary,
        "value": value,
        "threshold": required,
        "baseline": baseline,
        "passed": passed,
        "description": (
            f"{primary} = {value:.4f} against {baseline:.4f} by {how} (positive rate {p:.3f}): "
            f"lift {lift:+.4f} {verdict}"
        ),
    }


# Each gate check, the limit that decides it, and which way a new limit would let it pass.
GATE_LIMIT = {
    **{f"{m.removeprefix('min_')}_gate": m for m in FLOORS},
    "beats_baseline": "min_lift",
    "beats_production": "tolerance",
}


def advice(report: EvaluationReport, spec_file: str, op: str) -> str | None:
    """One short block for the gates `report` failed: each one's figure against its limit and
    where the limit came from, then the YAML that would let this evaluation pass (in the spec,
    or for one run). None when every gate passed."""
    failed = [g for g in report.gates if not g.passed]
    if not failed:
        return None
    lines, changes = [], {}
    for g in failed:
        limit = GATE_LIMIT.get(g.name)
        if g.name == "fairness":
            fair = report.fairness
            worst = fair.worst_equalized_odds()
            limit = "max_equalized_odds" if worst is not None else None
            if worst is not None:
                changes[limit] = _ceil(worst)
            lines.append(f"  fairness: {fair.message}")
        elif limit == "tolerance":
            cc = report.champion_challenger
            f = cc.figures
            if f.baseline is not None:
                changes[limit] = _ceil(f.baseline - f.candidate)
                lines.append(
                    f"  beats_production: {f.metric} = {f.candidate:.4f} < {f.required:.4f}"
                    f" (production version {cc.production_version}'s {f.baseline:.4f}"
                    f" - tolerance {f.tolerance:g})"
                )
            else:  # production could not be scored: no tolerance helps
                lines.append(f"  beats_production: {g.description}")
        elif limit == "min_lift":
            changes[limit] = _floor(g.value - g.baseline)
            lines.append(f"  beats_baseline: {g.description}")
        elif limit:
            changes[limit] = _floor(g.value)
            lines.append(f"  {g.name}: {g.metric} = {g.value:.4f} < {g.threshold} ({limit})")
        if limit:
            source = report.limits[limit].source if limit in report.limits else DEFAULT
            lines[-1] += f" [{limit} from {source}]"
    flow = ", ".join(f"{k}: {v}" for k, v in changes.items())
    head = f"{len(failed)} gate(s) failed, so nothing was registered:"
    tail = [
        f"To accept this model, set in {spec_file}:",
        f"  gates: {{{flow}}}",
        "or for one run, in its run config:",
        f"  ops: {{{op}: {{config: {{{flow}}}}}}}",
    ]
    return "\n".join([head, *lines, *(tail if changes else [])])


def _floor(x: float) -> float:
    """Two decimals, rounded down: a minimum the figure meets."""
    return math.floor(x * 100 + 1e-9) / 100


def _ceil(x: float) -> float:
    """Two decimals, rounded up: a maximum the figure stays under."""
    return math.ceil(x * 100 - 1e-9) / 100
