"""Metrics on held-out data, metric gates, and the pictures a person looks at."""

from __future__ import annotations

import base64
import io
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlassets.ml.defaults import METRICS  # noqa: F401  (re-exported; defaults is its home)


def classification_metrics(y_true, y_pred, y_score) -> dict[str, float]:
    """Accuracy, precision, recall, F1 (positive class), ROC AUC and PR AUC (average precision).

    Undefined values (no predicted positives, a single class) are 0.0 rather than errors, so a
    degenerate model fails its gates instead of crashing the run.
    """
    from sklearn import metrics as m

    y_true = np.asarray(y_true)
    two_classes = len(np.unique(y_true)) == 2
    return {
        "accuracy": float(m.accuracy_score(y_true, y_pred)),
        "precision": float(m.precision_score(y_true, y_pred, zero_division=0)),
        "recall": float(m.recall_score(y_true, y_pred, zero_division=0)),
        "f1": float(m.f1_score(y_true, y_pred, zero_division=0)),
        "roc_auc": float(m.roc_auc_score(y_true, y_score)) if two_classes else 0.0,
        "pr_auc": float(m.average_precision_score(y_true, y_score)) if two_classes else 0.0,
    }


def positive_scores(model, X: pd.DataFrame) -> np.ndarray:
    """The model's score for the positive class (probability where the model has one)."""
    if hasattr(model, "predict_proba"):
        return model.predict_proba(X)[:, 1]
    return model.decision_function(X)


def evaluate(model, X: pd.DataFrame, y: pd.Series) -> dict[str, Any]:
    """A JSON-ready report of `model` on (X, y): metrics, confusion matrix, row counts."""
    from sklearn.metrics import confusion_matrix

    y_pred = model.predict(X)
    y_score = positive_scores(model, X)
    tn, fp, fn, tp = (int(v) for v in confusion_matrix(y, y_pred, labels=[0, 1]).ravel())
    return {
        "metrics": classification_metrics(y, y_pred, y_score),
        "confusion_matrix": {"tn": tn, "fp": fp, "fn": fn, "tp": tp},
        "rows": int(len(y)),
        "positive_rate": float(np.mean(y)) if len(y) else 0.0,
    }


@dataclass(frozen=True)
class GateResult:
    metric: str
    value: float
    threshold: float | None
    passed: bool

    def describe(self) -> str:
        if self.threshold is None:
            return f"{self.metric} = {self.value:.4f} (no threshold set)"
        verdict = "passes" if self.passed else "FAILS"
        return f"{self.metric} = {self.value:.4f} {verdict} the gate >= {self.threshold}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def gate(metrics: dict[str, float], thresholds: dict[str, float | None]) -> list[GateResult]:
    """Compare each metric with its minimum; a metric without a threshold passes."""
    results = []
    for metric, threshold in thresholds.items():
        if metric not in metrics:
            raise KeyError(f"gate on unknown metric {metric!r} (known: {sorted(metrics)})")
        value = metrics[metric]
        passed = threshold is None or value >= threshold
        results.append(GateResult(metric, value, threshold, passed))
    return results


def png_data_url(fig) -> str:
    """Render a matplotlib figure as a PNG data URL (for markdown metadata), then close it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def confusion_and_roc_figure(model, X: pd.DataFrame, y: pd.Series):
    """One figure: the confusion matrix and the ROC curve of `model` on (X, y)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay, RocCurveDisplay

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.8))
    ConfusionMatrixDisplay.from_predictions(y, model.predict(X), ax=ax1, colorbar=False)
    ax1.set_title("Confusion matrix (test set)")
    RocCurveDisplay.from_predictions(y, positive_scores(model, X), ax=ax2)
    ax2.set_title("ROC curve (test set)")
    return fig
