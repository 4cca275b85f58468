"""What the model relies on and whether its scores mean what they say.

Permutation importance is measured on the Pipeline after its feature step, so it ranks the
features a user declared in the spec (`category`, the derived `days_since_signup`), not the one-hot
columns the Pipeline makes of them nor the raw dates a derived feature is computed from, and it
includes whatever the preprocessing does. Calibration compares predicted probabilities with
observed positive rates: a threshold or a business rule on the score assumes they agree.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def input_columns(model, X: pd.DataFrame) -> list[str]:
    """The columns `model` was fitted on (in its order), else all of X's."""
    names = getattr(model, "feature_names_in_", None)
    return [str(c) for c in names] if names is not None else [str(c) for c in X.columns]


def feature_view(model, X: pd.DataFrame) -> tuple[Any, pd.DataFrame]:
    """`model` and `X` seen after the model's `SpecFeatures` step (raw rows become features), or
    as they are for a model without one."""
    from mlassets.ml.features import SpecFeatures

    steps = getattr(model, "steps", None)
    if steps and isinstance(steps[0][1], SpecFeatures):
        return model[1:], steps[0][1].transform(X)
    return model, X


def permutation_importance_table(
    model,
    X: pd.DataFrame,
    y,
    *,
    scoring: str = "roc_auc",
    n_repeats: int = 5,
    seed: int = 42,
    n_jobs: int | None = 1,
    max_samples: float | int = 1.0,
) -> pd.DataFrame:
    """Permutation importance of each feature (after `feature_view`), highest first.

    Shuffling a column and measuring the drop in `scoring` on held-out rows (the test set) shows
    what the fitted model uses there, without trusting impurity importances, which favour
    high-cardinality columns. `scoring` defaults to ROC AUC: threshold-free, so the ranking does
    not move with the decision threshold. Seeded; `n_jobs` parallelises over columns.
    Columns: feature, importance_mean, importance_std, rank (1 = most important).
    """
    from sklearn.inspection import permutation_importance

    model, X = feature_view(model, X)
    columns = input_columns(model, X)
    result = permutation_importance(
        model,
        X[columns],
        np.asarray(y),
        scoring=scoring,
        n_repeats=n_repeats,
        random_state=seed,
        n_jobs=n_jobs,
        max_samples=max_samples,
    )
    table = pd.DataFrame(
        {
            "feature": columns,
            "importance_mean": result.importances_mean.astype(float),
            "importance_std": result.importances_std.astype(float),
        }
    )
    table = table.sort_values(
        ["importance_mean", "feature"], ascending=[False, True], kind="stable"
    ).reset_index(drop=True)
    table["rank"] = np.arange(1, len(table) + 1)
    return table


def top_k(table: pd.DataFrame, k: int = 10) -> pd.DataFrame:
    """The k most important rows of an importance table."""
    return table.head(k).reset_index(drop=True)


def calibration(y_true, y_prob, *, n_bins: int = 10, strategy: str = "uniform") -> dict[str, Any]:
    """Brier score, expected calibration error and the reliability curve of probabilities.

    `strategy` is sklearn's: "uniform" bins of equal width or "quantile" bins of equal count.
    The curve table has one row per non-empty bin: mean_predicted, fraction_positive, count.
    """
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import brier_score_loss

    y = np.asarray(y_true).astype(int)
    p = np.asarray(y_prob, dtype=float)
    if len(p) and (p.min() < 0 or p.max() > 1):
        raise ValueError("calibration needs probabilities in [0, 1], not decision scores")
    fraction_positive, mean_predicted = calibration_curve(y, p, n_bins=n_bins, strategy=strategy)
    # the same bins as calibration_curve, to count rows per bin
    if strategy == "quantile":
        edges = np.percentile(p, np.linspace(0, 1, n_bins + 1) * 100)
    else:
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    counts = np.bincount(np.searchsorted(edges[1:-1], p), minlength=len(edges))
    counts = counts[counts != 0]
    curve = pd.DataFrame(
        {
            "mean_predicted": mean_predicted.astype(float),
            "fraction_positive": fraction_positive.astype(float),
            "count": counts.astype(int),
        }
    )
    ece = float(
        np.sum(curve["count"] * (curve["mean_predicted"] - curve["fraction_positive"]).abs())
        / max(len(p), 1)
    )
    return {
        "brier": float(brier_score_loss(y, p)),
        "expected_calibration_error": ece,
        "n_bins": n_bins,
        "strategy": strategy,
        "curve": curve,
    }
