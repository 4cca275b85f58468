"""Champion/challenger comparison, the report's pictures, and a self-contained HTML page.

Every picture is a function returning a matplotlib Figure drawn without pyplot's global state
(`matplotlib.figure.Figure`, rendered by Agg), so building figures in a worker or a thread leaks
nothing; `png_bytes` renders one, `evaluation.png_data_url` makes the markdown form, and
`build_html` puts a report dict and its PNGs into one HTML string with no external resources.
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
    table: pd.DataFrame, threshold: float, metric: str = "f1", default: float = 0.5
):
    """Precision, recall and the tuning metric against the threshold; default and chosen marked.

    Takes the table from `threshold.tune_threshold` (`default` is 0.0 for decision scores).
    """
    fig, ax = _figure(6.0, 3.8)
    for col in ("precision", "recall", "f1"):
        ax.plot(table["threshold"], table[col], label=col)
    if metric not in ("precision", "recall", "f1") and "score" in table:
        ax.plot(table["threshold"], table["score"], label=str(metric), lw=2)
    ax.axvline(default, color="grey", ls=":", label=f"default {default:g}")
    ax.axvline(threshold, color="black", ls="--", label=f"chosen {threshold:.3g}")
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
    """Per-group selection rate, TPR and FPR; groups left out of the gate are hatched."""
    rates = ("selection_rate", "tpr", "fpr")
    x = np.arange(len(groups))
    width = 0.8 / len(rates)
    fig, ax = _figure(max(5.0, 1.2 * len(groups) + 2), 3.8)
    gated = groups["gated"] if "gated" in groups else pd.Series(True, index=groups.index)
    for i, rate in enumerate(rates):
        bars = ax.bar(x + (i - 1) * width, groups[rate], width, label=rate)
        for bar, ok in zip(bars, gated, strict=True):
            if not ok:
                bar.set_hatch("//")
                bar.set_alpha(0.5)
    labels = [
        f"{g}\n(n={n})" + ("" if ok else "\nnot gated")
        for g, n, ok in zip(groups.index, groups["count"], gated, strict=True)
    ]
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8)
    ax.set_title(f"Rates by group: {column}" if column else "Rates by group")
    return fig


def comparison_figure(
    candidate_metrics: Mapping[str, float],
    baseline_metrics: Mapping[str, float] | None = None,
    metrics: tuple[str, ...] = ("accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc"),
):
    """Candidate and baseline metrics side by side."""
    names = [m for m in metrics if m in candidate_metrics]
    x = np.arange(len(names))
    fig, ax = _figure(6.0, 3.6)
    cand = [candidate_metrics[m] for m in names]
    if baseline_metrics:
        base = [baseline_metrics.get(m, np.nan) for m in names]
        ax.bar(x - 0.2, base, 0.4, label="baseline", color="tab:gray")
        ax.bar(x + 0.2, cand, 0.4, label="candidate", color="tab:blue")
    else:
        ax.bar(x, cand, 0.6, label="candidate", color="tab:blue")
    ax.set_xticks(x, names)
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8)
    ax.set_title("Candidate vs baseline (test set)")
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
