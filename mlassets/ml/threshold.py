"""The decision threshold: tuned on validation data and carried inside the model.

A classifier's `predict` cuts its positive-class score at 0.5, which is rarely the best cut for a
rare positive class. We choose the cut that maximises a metric on the validation set (never the
test set, which must stay an unbiased judge) and wrap the fitted Pipeline in sklearn's
`FixedThresholdClassifier` around a `FrozenEstimator`, so the threshold is part of the model:
saved by `mlflow.sklearn` (skops format) and loaded through `mlflow.pyfunc`, it predicts with it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

# Metrics computed from confusion counts; all are "greater is better".
COUNT_METRICS = (
    "f1",
    "f2",
    "precision",
    "recall",
    "accuracy",
    "balanced_accuracy",
    "mcc",
    "youden",
)
DEFAULT_THRESHOLD = 0.5

MetricLike = str | Callable[[np.ndarray, np.ndarray], float]


def _div(num, den):
    """num / den, with 0 where den is 0 (the `zero_division=0` convention of evaluation.py)."""
    num = np.asarray(num, dtype=float)
    den = np.asarray(den, dtype=float)
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den != 0)


def count_metric(metric: str, tp, fp, fn, tn) -> np.ndarray:
    """A metric from confusion counts (scalars or arrays), vectorised over thresholds/resamples.

    Undefined values are 0.0, as in `evaluation.classification_metrics`.
    """
    tp, fp, fn, tn = (np.asarray(v, dtype=float) for v in (tp, fp, fn, tn))
    precision = _div(tp, tp + fp)
    recall = _div(tp, tp + fn)
    specificity = _div(tn, tn + fp)
    if metric == "precision":
        return precision
    if metric == "recall":
        return recall
    if metric == "f1":
        return _div(2 * tp, 2 * tp + fp + fn)
    if metric == "f2":
        return _div(5 * tp, 5 * tp + 4 * fn + fp)
    if metric == "accuracy":
        return _div(tp + tn, tp + fp + fn + tn)
    if metric == "balanced_accuracy":
        return (recall + specificity) / 2
    if metric == "youden":
        return recall + specificity - 1
    if metric == "mcc":
        den = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
        return _div(tp * tn - fp * fn, den)
    raise ValueError(f"metric {metric!r} is unknown (known: {list(COUNT_METRICS)})")


def base_model(model):
    """The fitted model inside a threshold wrapper (and its FrozenEstimator), or `model` itself."""
    from sklearn.frozen import FrozenEstimator
    from sklearn.model_selection import FixedThresholdClassifier

    while isinstance(model, FixedThresholdClassifier | FrozenEstimator):
        model = model.estimator
    return model


def _response_method(model) -> str:
    return "predict_proba" if hasattr(model, "predict_proba") else "decision_function"


def scores(model, X: pd.DataFrame) -> np.ndarray:
    """The positive-class score the threshold applies to (probability where there is one)."""
    model = base_model(model)
    if hasattr(model, "predict_proba"):
        return model.predict_proba(X)[:, 1]
    return model.decision_function(X)


def candidate_thresholds(y_score: np.ndarray, is_probability: bool = True) -> np.ndarray:
    """Thresholds to try: 0.01..0.99 for probabilities, 99 score quantiles otherwise.

    A fixed grid keeps the table small and the choice stable under small data changes.
    """
    if is_probability:
        return np.round(np.linspace(0.01, 0.99, 99), 4)
    return np.unique(np.quantile(np.asarray(y_score, dtype=float), np.linspace(0.01, 0.99, 99)))


def threshold_table(
    y_true, y_score, thresholds: np.ndarray, metric: MetricLike = "f1"
) -> pd.DataFrame:
    """Precision, recall, F1, accuracy, positive rate and `metric` at each threshold.

    A row is predicted positive when its score is >= the threshold (sklearn's convention).
    """
    y = np.asarray(y_true).astype(bool)
    s = np.asarray(y_score, dtype=float)
    t = np.asarray(thresholds, dtype=float)
    pos = s[None, :] >= t[:, None]  # (thresholds, rows)
    tp = (pos & y).sum(axis=1)
    fp = (pos & ~y).sum(axis=1)
    fn = y.sum() - tp
    tn = (~y).sum() - fp
    table = pd.DataFrame(
        {
            "threshold": t,
            "precision": count_metric("precision", tp, fp, fn, tn),
            "recall": count_metric("recall", tp, fp, fn, tn),
            "f1": count_metric("f1", tp, fp, fn, tn),
            "accuracy": count_metric("accuracy", tp, fp, fn, tn),
            "positive_rate": _div(tp + fp, len(y)),
        }
    )
    if callable(metric):
        table["score"] = [float(metric(y.astype(int), p.astype(int))) for p in pos]
    elif metric in table:
        table["score"] = table[metric]
    else:
        table["score"] = count_metric(metric, tp, fp, fn, tn)
    return table


def tune_threshold(
    model,
    X_val: pd.DataFrame,
    y_val,
    metric: MetricLike = "f1",
    thresholds: np.ndarray | None = None,
) -> tuple[float, pd.DataFrame]:
    """The threshold maximising `metric` on validation data, and the table of metric by threshold.

    `metric` is a name from COUNT_METRICS or a callable (y_true, y_pred) -> float, greater is
    better. Ties go to the threshold nearest the default 0.5, the smallest change that is as good.
    Fit the model on training rows and tune here on validation rows; judge on the test set.
    """
    y = np.asarray(y_val)
    if len(np.unique(y)) != 2:
        raise ValueError("tune_threshold needs both classes in the validation labels")
    inner = base_model(model)
    y_score = scores(inner, X_val)
    is_prob = hasattr(inner, "predict_proba")
    if thresholds is None:
        thresholds = candidate_thresholds(y_score, is_probability=is_prob)
    table = threshold_table(y, y_score, thresholds, metric)
    default = DEFAULT_THRESHOLD if is_prob else 0.0
    best = table["score"].max()
    tied = table[np.isclose(table["score"], best, rtol=0, atol=1e-12)]
    chosen = float(tied.loc[(tied["threshold"] - default).abs().idxmin(), "threshold"])
    table["chosen"] = table["threshold"] == chosen
    return chosen, table.reset_index(drop=True)


def with_threshold(model, threshold: float):
    """`model` (fitted) as a classifier that predicts positive when its score >= `threshold`.

    The fitted model is wrapped in a FrozenEstimator, so "fitting" the wrapper only records its
    fitted attributes (classes_, feature names) and never refits or copies the model. The result
    is a plain sklearn estimator: skops and mlflow.sklearn save it, mlflow.pyfunc predicts with
    the threshold. Re-wrapping a thresholded model replaces its threshold.
    """
    from sklearn.frozen import FrozenEstimator
    from sklearn.model_selection import FixedThresholdClassifier
    from sklearn.utils.validation import check_is_fitted

    inner = base_model(model)
    check_is_fitted(inner)
    classes = np.asarray(inner.classes_)
    if len(classes) != 2:
        raise ValueError(f"a decision threshold needs a binary classifier (classes: {classes})")
    wrapped = FixedThresholdClassifier(
        FrozenEstimator(inner),
        threshold=float(threshold),
        response_method=_response_method(inner),
    )
    # FrozenEstimator.fit ignores its data; the wrapper's fit only checks the labels are binary.
    return wrapped.fit(np.zeros((len(classes), 1)), classes)


def decision_threshold(model) -> float:
    """The threshold `model` predicts with: its wrapper's, else the default for its score."""
    from sklearn.model_selection import FixedThresholdClassifier

    if isinstance(model, FixedThresholdClassifier) and model.threshold != "auto":
        return float(model.threshold)
    return DEFAULT_THRESHOLD if hasattr(base_model(model), "predict_proba") else 0.0


def metrics_at(y_true, y_score, thresholds: dict[str, float]) -> pd.DataFrame:
    """Metrics at each named threshold (e.g. {"default": 0.5, "tuned": t}), one row each.

    Threshold-free metrics (ROC AUC, PR AUC) are the same on every row; they are kept so a row
    reads like `evaluation.classification_metrics`.
    """
    from mlassets.ml.evaluation import classification_metrics

    s = np.asarray(y_score, dtype=float)
    rows = []
    for name, t in thresholds.items():
        y_pred = (s >= t).astype(int)
        metrics = classification_metrics(y_true, y_pred, s)
        rate = float(y_pred.mean()) if len(y_pred) else 0.0
        rows.append({"name": name, "threshold": float(t), **metrics, "positive_rate": rate})
    return pd.DataFrame(rows).set_index("name")
