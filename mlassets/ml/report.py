"""Champion/challenger comparison, the report's pictures, and a self-contained HTML page.

Every picture is a function returning a matplotlib Figure drawn without pyplot's global state
(`matplotlib.figure.Figure`, rendered by Agg), so building figures in a worker or a thread leaks
nothing; `png_bytes` renders one, `evaluation.png_data_url` makes the markdown form, and
`build_html` puts a report dict and its PNGs into one HTML string with no external resources.
The report itself is a typed record (`records.EvaluationReport`), validated where it is built.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlassets.ml.defaults import EVALUATION
from mlassets.ml.records import EvaluationReport, Fairness, dump, jsonable
from mlassets.ml.threshold import COUNT_METRICS, count_metric

# ---------------------------------------------------------------------------------------------
# Champion / challenger


@dataclass
class Comparison:
    """The candidate against the baseline (the production model) on the same test set."""

    passed: bool
    primary: str
    figures: dict[str, Any]
    message: str
    interval: dict[str, float] | None = field(default=None)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare(
    candidate_metrics: Mapping[str, float],
    baseline_metrics: Mapping[str, float] | None,
    primary: str = "f1",
    tolerance: float = 0.0,
    greater_is_better: bool = True,
    interval: tuple[float, float, float] | None = None,
) -> Comparison:
    """Does the candidate do at least as well as the baseline on `primary`, within `tolerance`?

    The candidate passes when candidate >= baseline - tolerance (greater is better). A negative
    tolerance demands an improvement of at least |tolerance|. Checked with
    `mlflow.validate_evaluation_results`: MetricThreshold only accepts a positive
    `min_absolute_change`, so a tolerance >= 0 becomes an absolute `threshold` at the baseline's
    value minus the tolerance, and a negative one a `min_absolute_change` of -tolerance.
    No baseline (first model), or a baseline without `primary`, passes and says so.
    `interval` is `bootstrap(...)`'s (low, high, mean) of the difference: reported, not gated.
    """
    if primary not in candidate_metrics:
        raise KeyError(
            f"candidate metrics have no {primary!r} (known: {sorted(candidate_metrics)})"
        )
    candidate = float(candidate_metrics[primary])
    figures: dict[str, Any] = {
        "metric": primary,
        "candidate": candidate,
        "baseline": None,
        "difference": None,
        "tolerance": float(tolerance),
        "required": None,
    }
    if not baseline_metrics or baseline_metrics.get(primary) is None:
        why = "no baseline model" if not baseline_metrics else f"the baseline has no {primary}"
        return Comparison(
            True, primary, figures, f"{primary} = {candidate:.4f}; {why}: nothing to beat"
        )
    ci = None
    if interval is not None:
        ci = dict(zip(("low", "high", "mean"), (float(v) for v in interval), strict=True))

    import mlflow
    from mlflow.models import MetricThreshold
    from mlflow.models.evaluation import EvaluationResult
    from mlflow.models.evaluation.validation import ModelValidationFailedException

    baseline = float(baseline_metrics[primary])
    sign = 1.0 if greater_is_better else -1.0
    required = baseline - sign * tolerance
    if tolerance >= 0:
        rule = MetricThreshold(threshold=required, greater_is_better=greater_is_better)
    else:
        rule = MetricThreshold(min_absolute_change=-tolerance, greater_is_better=greater_is_better)
    figures.update(baseline=baseline, difference=candidate - baseline, required=required)
    head = (
        f"{primary}: candidate {candidate:.4f} vs baseline {baseline:.4f} "
        f"(difference {candidate - baseline:+.4f}, tolerance {tolerance:g}"
        + (f"; bootstrap interval [{ci['low']:+.4f}, {ci['high']:+.4f}]" if ci else "")
        + ")"
    )
    try:
        mlflow.validate_evaluation_results(
            validation_thresholds={primary: rule},
            candidate_result=EvaluationResult({primary: candidate}, {}, run_id=""),
            baseline_result=EvaluationResult({primary: baseline}, {}, run_id=""),
        )
    except ModelValidationFailedException as e:
        op = ">=" if greater_is_better else "<="
        msg = f"{head} FAILS: needs {op} {required:.4f}. MLflow: {e.message}"
        return Comparison(False, primary, figures, msg, ci)
    return Comparison(True, primary, figures, f"{head} passes", ci)


def _score_metric(name: str) -> Callable[[np.ndarray, np.ndarray], float]:
    from sklearn.metrics import average_precision_score, roc_auc_score

    return {"roc_auc": roc_auc_score, "pr_auc": average_precision_score}[name]


def bootstrap(
    y,
    pred_candidate,
    pred_baseline,
    metric: str | Callable[[np.ndarray, np.ndarray], float] = "f1",
    resamples: int = 1000,
    seed: int = 42,
    confidence: float = 0.95,
) -> tuple[float, float, float]:
    """Percentile interval (low, high) and mean of metric(candidate) - metric(baseline).

    Both models are scored on the SAME resampled rows each time (a paired bootstrap), so the
    interval reflects the difference between the models, not the luck of the test set twice.
    `metric` is a name from threshold.COUNT_METRICS (predictions are labels), "roc_auc" or
    "pr_auc" (predictions are scores), or a callable (y_true, pred) -> float. Seeded.
    """
    y = np.asarray(y).astype(int)
    a = np.asarray(pred_candidate)
    b = np.asarray(pred_baseline)
    if not len(y) == len(a) == len(b):
        raise ValueError("y and both predictions need the same length")
    rng = np.random.default_rng(seed)
    n = len(y)
    diffs = np.empty(resamples)
    if isinstance(metric, str) and metric in COUNT_METRICS:
        code_a = 2 * y + a.astype(int)  # 0 tn, 1 fp, 2 fn, 3 tp
        code_b = 2 * y + b.astype(int)
        for i in range(resamples):
            idx = rng.integers(0, n, n)
            tn_a, fp_a, fn_a, tp_a = np.bincount(code_a[idx], minlength=4)
            tn_b, fp_b, fn_b, tp_b = np.bincount(code_b[idx], minlength=4)
            diffs[i] = count_metric(metric, tp_a, fp_a, fn_a, tn_a) - count_metric(
                metric, tp_b, fp_b, fn_b, tn_b
            )
    else:
        fn = _score_metric(metric) if isinstance(metric, str) else metric
        for i in range(resamples):
            idx = rng.integers(0, n, n)
            if len(np.unique(y[idx])) < 2:  # AUCs are undefined on one class
                diffs[i] = np.nan
                continue
            diffs[i] = fn(y[idx], a[idx]) - fn(y[idx], b[idx])
    alpha = (1 - confidence) / 2
    low, high = np.nanquantile(diffs, [alpha, 1 - alpha])
    return float(low), float(high), float(np.nanmean(diffs))


# ---------------------------------------------------------------------------------------------
# Pictures


def _figure(width: float = 5.0, height: float = 4.0, **subplots):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.subplots(**subplots)


def _as_thresholds(thresholds: float | Mapping[str, float] | None) -> dict[str, float]:
    if thresholds is None:
        return {}
    if isinstance(thresholds, Mapping):
        return {str(k): float(v) for k, v in thresholds.items()}
    return {f"threshold {float(thresholds):.3g}": float(thresholds)}


def _rates_at(y: np.ndarray, s: np.ndarray, t: float) -> dict[str, float]:
    pred = s >= t
    tp = int(np.sum(pred & (y == 1)))
    fp = int(np.sum(pred & (y == 0)))
    fn = int(np.sum(~pred & (y == 1)))
    tn = int(np.sum(~pred & (y == 0)))
    return {
        "tpr": float(count_metric("recall", tp, fp, fn, tn)),
        "fpr": fp / (fp + tn) if fp + tn else 0.0,
        "precision": float(count_metric("precision", tp, fp, fn, tn)),
    }


_MARKERS = ("o", "s", "D", "^", "v")


def roc_figure(y_true, y_score, thresholds: float | Mapping[str, float] | None = None):
    """ROC curve with each named threshold marked at its (FPR, TPR)."""
    from sklearn.metrics import RocCurveDisplay

    y, s = np.asarray(y_true).astype(int), np.asarray(y_score, dtype=float)
    fig, ax = _figure()
    RocCurveDisplay.from_predictions(y, s, ax=ax, name="model", plot_chance_level=True)
    for (label, t), marker in zip(_as_thresholds(thresholds).items(), _MARKERS, strict=False):
        r = _rates_at(y, s, t)
        ax.plot(r["fpr"], r["tpr"], marker=marker, ms=8, ls="none", label=f"{label} ({t:.3g})")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("ROC curve")
    return fig


def pr_figure(y_true, y_score, thresholds: float | Mapping[str, float] | None = None):
    """Precision-recall curve with each named threshold marked at its (recall, precision)."""
    from sklearn.metrics import PrecisionRecallDisplay

    y, s = np.asarray(y_true).astype(int), np.asarray(y_score, dtype=float)
    fig, ax = _figure()
    PrecisionRecallDisplay.from_predictions(y, s, ax=ax, name="model", plot_chance_level=True)
    for (label, t), marker in zip(_as_thresholds(thresholds).items(), _MARKERS, strict=False):
        r = _rates_at(y, s, t)
        ax.plot(
            r["tpr"], r["precision"], marker=marker, ms=8, ls="none", label=f"{label} ({t:.3g})"
        )
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title("Precision-recall curve")
    return fig


def confusion_figure(y_true, y_score, thresholds: float | Mapping[str, float]):
    """One confusion matrix per named threshold, side by side (e.g. default 0.5 and tuned)."""
    from sklearn.metrics import ConfusionMatrixDisplay

    named = _as_thresholds(thresholds)
    y, s = np.asarray(y_true).astype(int), np.asarray(y_score, dtype=float)
    fig, axes = _figure(3.6 * len(named), 3.4, ncols=len(named), squeeze=False)
    for ax, (label, t) in zip(axes[0], named.items(), strict=True):
        ConfusionMatrixDisplay.from_predictions(
            y, (s >= t).astype(int), labels=[0, 1], ax=ax, colorbar=False
        )
        ax.set_title(f"{label} ({t:.3g})")
    return fig


def threshold_figure(
    table: pd.DataFrame,
    threshold: float,
    metric: str = "f1",
    default: float = 0.5,
    best: float | None = None,
    standard_error: float | None = None,
):
    """Precision, recall and the tuning metric against the threshold; default and chosen marked.

    Takes the table from `threshold.tune_threshold` (`default` is 0.0 for decision scores). With
    `best` and `standard_error` (the one-SE rule) the argmax and the best score minus one
    standard error are drawn too.
    """
    fig, ax = _figure(6.0, 3.8)
    for col in ("precision", "recall", "f1"):
        ax.plot(table["threshold"], table[col], label=col)
    if metric not in ("precision", "recall", "f1") and "score" in table:
        ax.plot(table["threshold"], table["score"], label=str(metric), lw=2)
    ax.axvline(default, color="grey", ls=":", label=f"default {default:g}")
    ax.axvline(threshold, color="black", ls="--", label=f"chosen {threshold:.3g}")
    if best is not None and not np.isclose(best, threshold):
        ax.axvline(best, color="tab:red", ls="-.", lw=1, label=f"best {metric} at {best:.3g}")
    if best is not None and standard_error:
        top = float(table.loc[np.isclose(table["threshold"], best), "score"].iloc[0])
        ax.axhline(top - standard_error, color="tab:red", ls=":", lw=1, label="best - 1 SE")
    ax.set_xlabel("threshold")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8)
    ax.set_title(f"Validation metrics by threshold (tuned for {metric})")
    return fig


def reliability_figure(calibration: Mapping[str, Any]):
    """Reliability curve (observed positive rate by predicted probability) and rows per bin.

    Takes the dict returned by `explain.calibration`.
    """
    curve: pd.DataFrame = calibration["curve"]
    fig, (ax, ax_n) = _figure(5.0, 5.2, nrows=2, height_ratios=[3, 1], sharex=True)
    ax.plot([0, 1], [0, 1], color="grey", ls=":", label="perfectly calibrated")
    ax.plot(curve["mean_predicted"], curve["fraction_positive"], marker="o", label="model")
    ax.set_ylabel("fraction of positives")
    ax.set_title(
        f"Reliability (Brier {calibration['brier']:.4f}, "
        f"ECE {calibration['expected_calibration_error']:.4f})"
    )
    ax.legend(fontsize=8)
    ax_n.bar(curve["mean_predicted"], curve["count"], width=0.8 / max(len(curve), 1))
    ax_n.set_yscale("log")
    ax_n.set_xlabel("mean predicted probability")
    ax_n.set_ylabel("rows")
    return fig


def importance_figure(table: pd.DataFrame, k: int = 10):
    """Horizontal bars of the top-k permutation importances (mean, with std as error bars)."""
    top = table.head(k).iloc[::-1]
    fig, ax = _figure(6.0, 0.45 * len(top) + 1.2)
    ax.barh(top["feature"], top["importance_mean"], xerr=top["importance_std"], color="tab:blue")
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_xlabel("drop in score when the column is shuffled")
    ax.set_title("Permutation importance (test set)")
    return fig


def group_figure(groups: pd.DataFrame, column: str = ""):
    """Per-group selection rate, TPR and FPR; rates left out of the gate are hatched.

    A group below the minimum size is out for every rate; a TPR (FPR) is also out when the group
    has too few positive (negative) rows (the `tpr_gated` / `fpr_gated` columns of fairness).
    """
    rates = ("selection_rate", "tpr", "fpr")
    x = np.arange(len(groups))
    width = 0.8 / len(rates)
    fig, ax = _figure(max(5.0, 1.2 * len(groups) + 2), 3.8)
    gated = groups["gated"] if "gated" in groups else pd.Series(True, index=groups.index)
    for i, rate in enumerate(rates):
        flags = groups.get(f"{rate}_gated", gated)
        bars = ax.bar(x + (i - 1) * width, groups[rate], width, label=rate)
        for bar, ok in zip(bars, flags, strict=True):
            if not ok:
                bar.set_hatch("//")
                bar.set_alpha(0.5)
    positives = groups.get("positives")
    labels = [
        f"{g}\n(n={n}"
        + (f", {positives.iloc[j]} pos)" if positives is not None else ")")
        + ("" if ok else "\nnot gated")
        for j, (g, n, ok) in enumerate(zip(groups.index, groups["count"], gated, strict=True))
    ]
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8)
    ax.set_title(
        (f"Rates by group: {column}" if column else "Rates by group") + " (hatched: not gated)"
    )
    return fig


def comparison_figure(
    candidate_metrics: Mapping[str, float],
    baseline_metrics: Mapping[str, float] | None = None,
    metrics: tuple[str, ...] = ("accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc"),
    baseline_label: str = "baseline",
):
    """Candidate and baseline metrics side by side (without a baseline, the candidate alone)."""
    names = [m for m in metrics if m in candidate_metrics]
    x = np.arange(len(names))
    fig, ax = _figure(6.0, 3.6)
    cand = [candidate_metrics[m] for m in names]
    if baseline_metrics:
        base = [baseline_metrics.get(m, np.nan) for m in names]
        ax.bar(x - 0.2, base, 0.4, label=baseline_label, color="tab:gray")
        ax.bar(x + 0.2, cand, 0.4, label="candidate", color="tab:blue")
    else:
        ax.bar(x, cand, 0.6, label="candidate", color="tab:blue")
    ax.set_xticks(x, names)
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8)
    ax.set_title(
        f"Candidate vs {baseline_label} (test set)"
        if baseline_metrics
        else f"Candidate (test set; no {baseline_label})"
    )
    return fig


def png_bytes(fig, dpi: int = 90) -> bytes:
    """The PNG bytes of a figure (rendered by Agg)."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# HTML

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#222;max-width:72rem}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
h3{font-size:1rem}table{border-collapse:collapse;margin:.5rem 0}
td,th{border:1px solid #ddd;padding:.25rem .6rem;text-align:left;font-size:.9rem}
th{background:#f5f5f5}.num{text-align:right;font-variant-numeric:tabular-nums}
.pass{color:#1a7f37;font-weight:600}.fail{color:#cf222e;font-weight:600}
figure{display:inline-block;margin:1rem 1rem 0 0;vertical-align:top}
figcaption{font-size:.85rem;color:#555}img{max-width:100%}
"""


def _cell(value: Any) -> str:
    if isinstance(value, bool | np.bool_):
        cls = "pass" if value else "fail"
        return f'<td class="{cls}">{"yes" if value else "no"}</td>'
    if isinstance(value, int | np.integer):
        return f'<td class="num">{int(value)}</td>'
    if isinstance(value, float | np.floating):
        text = "" if math.isnan(value) else f"{float(value):.4g}"
        return f'<td class="num">{text}</td>'
    if value is None:
        return "<td></td>"
    if isinstance(value, Mapping | list | tuple | pd.DataFrame):
        return f"<td>{_render(value, 4)}</td>"
    return f"<td>{html.escape(str(value))}</td>"


def _records_table(rows: list[Mapping[str, Any]]) -> str:
    keys: list[str] = []
    for row in rows:
        keys += [str(k) for k in row if str(k) not in keys]
    head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
    body = "".join("<tr>" + "".join(_cell(row.get(k)) for k in keys) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _render(value: Any, level: int) -> str:
    """Render a JSON-like value: mappings as key/value tables (nested ones as sections)."""
    if isinstance(value, pd.DataFrame):
        frame = value if isinstance(value.index, pd.RangeIndex) else value.reset_index()
        return _records_table(frame.to_dict(orient="records"))
    if isinstance(value, Mapping):
        flat = {k: v for k, v in value.items() if not isinstance(v, Mapping | pd.DataFrame)}
        nested = {k: v for k, v in value.items() if isinstance(v, Mapping | pd.DataFrame)}
        parts = []
        if flat:
            rows = "".join(
                f"<tr><th>{html.escape(str(k))}</th>{_cell(v)}</tr>" for k, v in flat.items()
            )
            parts.append(f"<table>{rows}</table>")
        tag = f"h{min(level, 6)}"
        for k, v in nested.items():
            parts.append(
                f"<section><{tag}>{html.escape(str(k))}</{tag}>{_render(v, level + 1)}</section>"
            )
        return "".join(parts)
    if isinstance(value, list | tuple):
        if value and all(isinstance(v, Mapping) for v in value):
            return _records_table(list(value))
        return html.escape(", ".join(str(v) for v in value))
    return html.escape(str(value))


def build_html(
    report: Mapping[str, Any], images: Mapping[str, bytes], title: str = "Evaluation report"
) -> str:
    """One self-contained HTML page: the report dict as tables, the PNGs inline as data URLs.

    Nothing is fetched from elsewhere (no scripts, stylesheets or remote images), so the file can
    be attached to an MLflow run or mailed and still render. Text is escaped.
    """
    figures = "".join(
        f'<figure><img alt="{html.escape(name)}" '
        f'src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'
        f"<figcaption>{html.escape(name)}</figcaption></figure>"
        for name, png in images.items()
    )
    body = _render(dict(report), 2)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}"
        + (f"<section><h2>Figures</h2>{figures}</section>" if figures else "")
        + "</body></html>\n"
    )


# ---------------------------------------------------------------------------------------------
# Assembling the evaluation report (what the `evaluation_report` asset calls)


def data_url(png: bytes) -> str:
    """PNG bytes as a data URL (for markdown metadata and HTML)."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def log_pngs(images: Mapping[str, bytes], artifact_path: str) -> list[str]:
    """Log PNGs to the active MLflow run as `<artifact_path>/<name>.png`; returns those paths."""
    import tempfile
    from pathlib import Path

    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        for name, png in images.items():
            (Path(tmp) / f"{name}.png").write_bytes(png)
        mlflow.log_artifacts(tmp, artifact_path)
    return [f"{artifact_path}/{name}.png" for name in images]


@dataclass
class Baseline:
    """The model a candidate must beat (the `production` version), or why it cannot be used."""

    version: str
    model: Any = None
    error: str | None = None


# What makes a production version permanently unscorable, and so a verdict of the comparison:
# the registry's own refusal (a foreign format, untrusted types, files gone) when loading it, and
# the model's refusal of today's test rows when scoring it (other columns, other types). A
# transient service error is raised for the step's retry policy; anything else is a bug, raised.
UNSCORABLE = (ValueError, KeyError, TypeError, IndexError)


def _unloadable() -> tuple[type[BaseException], ...]:
    from mlassets.ml.registry import RegistryError

    return (RegistryError,)


def load_baseline(client, spec, alias: str = "production") -> Baseline | None:
    """The version behind `alias` of `spec`'s model, loaded from the registry to take raw rows
    (`features.for_raw_rows`); None when there is none.

    A version the registry refuses for good (`registry.RegistryError`: a foreign or tampered
    model, its files gone) is returned with that error, so the report says so and the gate
    decides on it. A transient service error is raised: a brief outage is retried by the step,
    never turned into a verdict.
    """
    from mlassets.ml.features import for_raw_rows
    from mlassets.ml.registry import alias_version, load_verified_model

    version = alias_version(client, spec.name, alias)
    if version is None:
        return None
    try:
        model = load_verified_model(client, spec.name, version)
    except _unloadable() as e:
        return Baseline(version, None, f"{type(e).__name__}: {e}")
    return Baseline(version, for_raw_rows(model, spec))


def judge_gates(
    metrics: Mapping[str, float],
    thresholds: Mapping[str, float | None],
    champion_challenger: Mapping[str, Any],
    fairness: Mapping[str, Any],
    baseline: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Every gate's verdict in one list: `<metric>_gate` per threshold, `beats_baseline` (when
    given, `gates.beats_baseline`), `beats_production`, `fairness`; each with `name`, `passed`
    and a `description` a person can act on."""
    from mlassets.ml.evaluation import gate

    verdicts = [
        {"name": f"{r.metric}_gate", **r.as_dict(), "description": r.describe()}
        for r in gate(dict(metrics), dict(thresholds))
    ]
    if baseline is not None:
        verdicts.append(dict(baseline))
    verdicts.append(
        {
            "name": "beats_production",
            "passed": bool(champion_challenger["passed"]),
            "description": champion_challenger["message"],
        }
    )
    verdicts.append(
        {"name": "fairness", "passed": bool(fairness["passed"]), "description": fairness["message"]}
    )
    return verdicts


@dataclass
class Evaluation:
    """The report, its pictures (PNG bytes) and markdown sections for metadata."""

    report: EvaluationReport
    images: dict[str, bytes]
    markdown: dict[str, str]


def _champion_challenger(
    model,
    X: pd.DataFrame,
    y: np.ndarray,
    candidate_scores: np.ndarray,
    baseline: Baseline | None,
    metrics: Mapping[str, float],
    *,
    primary: str,
    tolerance: float,
    resamples: int,
    seed: int,
    allow_unscored: bool = False,
) -> dict[str, Any]:
    """Score the baseline on the same rows, compare on `primary`, bootstrap the difference.

    A production model that cannot be scored fails the comparison unless `allow_unscored`."""
    from mlassets.ml.evaluation import evaluate
    from mlassets.ml.threshold import decision_threshold, scores

    production = None
    error = baseline.error if baseline else None
    if baseline is not None and baseline.model is not None:
        try:
            production = evaluate(baseline.model, X, y)
            production["threshold"] = decision_threshold(baseline.model)
            if resamples > 0:
                by_label = primary in COUNT_METRICS
                candidate = model.predict(X) if by_label else candidate_scores
                base = baseline.model.predict(X) if by_label else scores(baseline.model, X)
                interval = bootstrap(y, candidate, base, primary, resamples, seed)
            else:
                interval = None
        except UNSCORABLE as e:  # e.g. production was trained on other columns
            production, error = None, f"{type(e).__name__}: {e}"
    if production is None:
        verdict = compare(metrics, None, primary, tolerance)
        if baseline is None:
            verdict.message = (
                f"{primary} = {metrics[primary]:.4f}; no production model yet: nothing to beat"
            )
        elif allow_unscored:
            verdict.message = (
                f"{primary} = {metrics[primary]:.4f}; production version {baseline.version} "
                f"could not be scored on the test set ({error}): not compared "
                "(allow_unscored_production is set)"
            )
        else:  # fail closed: a load error must not open the gate
            verdict.passed = False
            verdict.message = (
                f"{primary} = {metrics[primary]:.4f}; production version {baseline.version} "
                f"could not be scored on the test set ({error}): FAILS, since the candidate "
                "cannot be compared; fix or roll back production, or set "
                "EvaluationConfig.allow_unscored_production (e.g. after a spec change)"
            )
    else:
        verdict = compare(metrics, production["metrics"], primary, tolerance, interval=interval)
        verdict.message = f"against production version {baseline.version}: {verdict.message}"
    return {
        **verdict.as_dict(),
        "production_version": baseline.version if baseline else None,
        "production": production,
        "error": error,
    }


def _metrics_markdown(by_threshold: list[dict], production: dict | None, version) -> str:
    from mlassets.ml.evaluation import METRICS

    rows = []
    for m in (*METRICS, "positive_rate"):
        row = {"metric": m}
        for r in by_threshold:
            row[f"{r['name']} ({r['threshold']:.3g})"] = round(r[m], 4)
        if production is not None:
            cm = production["confusion_matrix"]
            predicted = (cm["tp"] + cm["fp"]) / max(production["rows"], 1)
            value = production["metrics"].get(m, predicted)  # positive_rate: of predictions
            row[f"production v{version}"] = round(value, 4)
        rows.append(row)
    return pd.DataFrame(rows).to_markdown(index=False)


def _fairness_markdown(fair: Fairness) -> str:
    parts = [fair.message]
    for col in fair.columns:
        table = pd.DataFrame(col.groups).round(4)
        dp, eo = col.demographic_parity_difference, col.equalized_odds_difference
        parts.append(
            f"**{col.column}**: demographic parity difference "
            + ("n/a" if dp is None else f"{dp:.3f}")
            + ", equalized odds difference "
            + ("n/a" if eo is None else f"{eo:.3f}")
            + "\n\n"
            + table.to_markdown(index=False)
        )
    return "\n\n".join(parts)


def build_evaluation(
    model,
    X: pd.DataFrame,
    y,
    sensitive: pd.DataFrame,
    baseline: Baseline | None = None,
    *,
    thresholds: Mapping[str, float | None] | None = None,
    primary_metric: str = EVALUATION.primary_metric,
    tolerance: float = EVALUATION.tolerance,
    bootstrap_resamples: int = EVALUATION.bootstrap_resamples,
    seed: int = EVALUATION.seed,
    max_demographic_parity: float | None = EVALUATION.max_demographic_parity,
    max_equalized_odds: float | None = EVALUATION.max_equalized_odds,
    min_group_size: int = EVALUATION.min_group_size,
    importance_repeats: int = EVALUATION.importance_repeats,
    importance_scoring: str = EVALUATION.importance_scoring,
    importance_max_rows: int = EVALUATION.importance_max_rows,
    top_k: int = EVALUATION.top_k,
    calibration_bins: int = EVALUATION.calibration_bins,
    allow_unscored_production: bool = EVALUATION.allow_unscored_production,
    min_lift: float | None = EVALUATION.min_lift,
    sources: Mapping[str, str] | None = None,
) -> Evaluation:
    """Everything `evaluation_report` holds, for `model` (thresholded) on the test rows (X, y).

    Metrics at the model's own threshold (the gates' figures) and at the default; the baseline
    scored on the same rows and compared on `primary_metric`; fairness of the model's predictions
    over each `sensitive` column; permutation importance of the original input columns;
    calibration; and the pictures. Keyword arguments are `EvaluationConfig.report_settings()`.

    Every gate is judged here, once: `report.gates` lists each metric gate (`thresholds`, by
    metric; default none), `beats_baseline` (the primary metric `min_lift` above a trivial
    predictor's, `gates.beats_baseline`), `beats_production` and `fairness` with its verdict. The
    checks on `evaluation_report` report these, and registration requires them all passed.
    `report.limits` keeps every limit with where it came from (`sources`, `gates.resolve`).
    """
    from mlassets.ml import explain, fairness
    from mlassets.ml.evaluation import METRICS, evaluate
    from mlassets.ml.threshold import base_model, decision_threshold, metrics_at, scores

    if primary_metric not in METRICS:
        raise ValueError(f"primary_metric {primary_metric!r} is unknown (known: {list(METRICS)})")
    y = np.asarray(y).astype(int)
    inner = base_model(model)
    is_prob = hasattr(inner, "predict_proba")
    result = evaluate(model, X, y)
    s = scores(model, X)
    t = decision_threshold(model)
    marks = {"default": 0.5 if is_prob else 0.0, "tuned": t}
    by_threshold = jsonable(metrics_at(y, s, marks).reset_index().to_dict(orient="records"))
    cc = _champion_challenger(
        model,
        X,
        y,
        s,
        baseline,
        result["metrics"],
        primary=primary_metric,
        tolerance=tolerance,
        resamples=bootstrap_resamples,
        seed=seed,
        allow_unscored=allow_unscored_production,
    )
    fair = fairness.fairness_report(
        y,
        model.predict(X),
        sensitive.reset_index(drop=True),
        min_group_size=min_group_size,
        max_demographic_parity=max_demographic_parity,
        max_equalized_odds=max_equalized_odds,
    )
    importance = None
    if importance_repeats > 0 and len(np.unique(y)) == 2:
        importance = explain.permutation_importance_table(
            inner,
            X,
            y,
            scoring=importance_scoring,
            n_repeats=importance_repeats,
            seed=seed,
            max_samples=min(importance_max_rows, len(X)),
        )
    calibration = explain.calibration(y, s, n_bins=calibration_bins) if is_prob else None

    figures = {
        "roc_curve": roc_figure(y, s, marks),
        "pr_curve": pr_figure(y, s, marks),
        "confusion_matrices": confusion_figure(y, s, marks),
    }
    if calibration is not None:
        figures["reliability_curve"] = reliability_figure(calibration)
    if importance is not None:
        figures["permutation_importance"] = importance_figure(importance, k=top_k)
    for col in fair.columns:
        figures[f"fairness_{col.column}"] = group_figure(col.groups, col.column)
    production = cc["production"]
    figures["candidate_vs_production"] = comparison_figure(
        result["metrics"],
        production["metrics"] if production else None,
        baseline_label=f"production v{cc['production_version']}" if production else "production",
    )
    images = {name: png_bytes(fig) for name, fig in figures.items()}

    from mlassets.ml.gates import beats_baseline

    thresholds = EVALUATION.thresholds() if thresholds is None else thresholds
    gates = judge_gates(
        result["metrics"],
        thresholds,
        cc,
        fair.as_dict(),
        beats_baseline(result["metrics"], y, primary_metric, min_lift),
    )
    limits = {
        **{f"min_{m}": v for m, v in thresholds.items()},
        "min_lift": min_lift,
        "tolerance": tolerance,
        "max_equalized_odds": max_equalized_odds,
        "max_demographic_parity": max_demographic_parity,
    }
    data = jsonable(
        {
            **result,
            "gates": gates,
            "passed": all(g["passed"] for g in gates),
            "limits": {
                name: {"value": value, "source": (sources or {}).get(name, "the default")}
                for name, value in limits.items()
            },
            "threshold": {"value": t, "default": marks["default"]},
            "by_threshold": by_threshold,
            "champion_challenger": cc,
            "fairness": fair.as_dict(),
            "importance": None
            if importance is None
            else {
                "scoring": importance_scoring,
                "repeats": importance_repeats,
                "top_k": explain.top_k(importance, top_k),
                "columns": importance,
            },
            "calibration": calibration,
        }
    )
    report = EvaluationReport.model_validate(data)  # a field of the wrong shape fails here
    markdown = {
        "metrics": _metrics_markdown(by_threshold, production, cc["production_version"]),
        "champion_challenger": cc["message"],
        "fairness": _fairness_markdown(report.fairness),
    }
    if importance is not None:
        markdown["importance"] = explain.top_k(importance, top_k).round(4).to_markdown(index=False)
    return Evaluation(report, images, markdown)


def log_report(report: EvaluationReport, images: Mapping[str, bytes]) -> list[str]:
    """Log the report's figures to the active MLflow run, with the JSON and the HTML page.

    Metrics: `test_*` (at the model's threshold), `test_*_at_default_threshold`, the production
    model's `production_test_*`, the difference on the primary metric (and its bootstrap
    interval), Brier score and ECE, and the fairness differences. Returns the artifact paths.
    """
    import re

    import mlflow

    metrics = {f"test_{k}": v for k, v in report.metrics.items()}
    metrics.update({f"test_{k}": v for k, v in report.confusion_matrix.items()})
    for row in report.by_threshold:
        if row["name"] == "default":
            metrics.update({f"test_{k}_at_default_threshold": row[k] for k in report.metrics})
    metrics["decision_threshold"] = report.threshold.value
    cc = report.champion_challenger
    if cc.production:
        metrics.update({f"production_test_{k}": v for k, v in cc.production.metrics.items()})
        metrics[f"{cc.primary}_difference_vs_production"] = cc.figures.difference
        for k, v in (cc.interval.model_dump() if cc.interval else {}).items():
            metrics[f"{cc.primary}_difference_bootstrap_{k}"] = v
    if report.calibration:
        metrics["test_brier"] = report.calibration.brier
        metrics["test_expected_calibration_error"] = report.calibration.expected_calibration_error
    for col in report.fairness.columns:
        key = re.sub(r"[^A-Za-z0-9_.-]", "_", col.column)
        for diff in ("demographic_parity_difference", "equalized_odds_difference"):
            if getattr(col, diff) is not None:
                metrics[f"fairness_{key}_{diff}"] = getattr(col, diff)
    mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None})
    mlflow.set_tags(
        {
            "compared_with_production_version": cc.production_version or "none",
            "beats_production": str(cc.passed).lower(),
            "fairness_passed": str(report.fairness.passed).lower(),
        }
    )
    paths = log_pngs(images, "evaluation")
    mlflow.log_dict(dump(report), "evaluation_report.json")
    mlflow.log_text(build_html(html_view(report), images), "evaluation.html")
    return [*paths, "evaluation_report.json", "evaluation.html"]


def log_threshold_choice(choice) -> bytes | None:
    """Log a `threshold.ThresholdChoice` to the active MLflow run; returns its plot as PNG.

    Params `decision_threshold`, `threshold_metric`, `threshold_tuned`; when tuned also
    `threshold_best` (the argmax), the validation metric at the default and the tuned threshold
    and its standard error, the table of metric by threshold (`threshold/threshold_table.json`)
    and its plot (`threshold/threshold.png`).
    """
    import mlflow

    mlflow.log_params(
        {
            "decision_threshold": choice.threshold,
            "threshold_metric": choice.metric,
            "threshold_tuned": choice.tuned,
        }
    )
    if choice.table is None:
        return None
    mlflow.log_params({"threshold_best": choice.best, "threshold_rule": "one_standard_error"})
    mlflow.log_metric(f"validation_{choice.metric}_standard_error", choice.standard_error)
    for which in ("default", "tuned"):
        score = choice.validation_score(which)
        if score is not None:
            mlflow.log_metric(f"validation_{choice.metric}_at_{which}_threshold", score)
    mlflow.log_table(choice.table, artifact_file="threshold/threshold_table.json")
    fig = threshold_figure(
        choice.table,
        choice.threshold,
        choice.metric,
        choice.default,
        best=choice.best,
        standard_error=choice.standard_error,
    )
    png = png_bytes(fig)
    log_pngs({"threshold": png}, "threshold")
    return png


def html_view(report: EvaluationReport) -> dict[str, Any]:
    """The report reordered for a reader: verdicts first, then each part as its own section."""
    cc, fair = report.champion_challenger, report.fairness
    calibration, importance = report.calibration, report.importance
    summary = {
        "decision threshold": report.threshold.value,
        "test rows": report.rows,
        "positive rate": report.positive_rate,
        "beats production": cc.passed,
        "champion/challenger": cc.message,
        "fairness passed": fair.passed,
        "fairness": fair.message,
        "Brier score": calibration.brier if calibration else None,
        "MLflow run": report.mlflow_run_id,
    }
    view: dict[str, Any] = {
        "Summary": summary,
        "Metrics at the default and the tuned threshold": pd.DataFrame(report.by_threshold),
        "Confusion matrix at the tuned threshold": report.confusion_matrix,
        "Champion / challenger": {
            "production version": cc.production_version or "none",
            **cc.figures.model_dump(),
            **{
                f"bootstrap {k}": v
                for k, v in (cc.interval.model_dump() if cc.interval else {}).items()
            },
            "error": cc.error,
        },
    }
    if cc.production:
        view["Production model on the same test set"] = cc.production.metrics
    for col in fair.columns:
        view[f"Fairness: {col.column}"] = {
            "demographic parity difference": col.demographic_parity_difference,
            "equalized odds difference": col.equalized_odds_difference,
            "offending groups": ", ".join(col.offending_groups) or "none",
            "groups": pd.DataFrame(col.groups),
        }
    if importance:
        view[f"Permutation importance ({importance.scoring}, test set)"] = pd.DataFrame(
            importance.columns
        )
    if calibration:
        view["Calibration"] = {
            "Brier score": calibration.brier,
            "expected calibration error": calibration.expected_calibration_error,
            "reliability curve": pd.DataFrame(calibration.curve),
        }
    return view
