"""Performance before the labels arrive: confidence-based performance estimation (CBPE).

A calibrated model's positive-class probability p is, row by row, the chance that the label is
positive. So on unlabelled rows the expected confusion counts at the model's own decisions are
sums of probabilities: expected true positives = sum of p over the rows it flags, false negatives
= sum of p over the rows it passes, and so on. Accuracy, precision, recall and F1 follow from
those counts. That holds as long as P(label | features) is what it was when the model was
calibrated: it tracks covariate shift (the rows move to where the model is less sure or less
right) but is blind to concept drift (the same rows now mean something else). Labels stay the
signal for that.

Calibration is sklearn's (`CalibratedClassifierCV` over the frozen fitted Pipeline, fit on
validation rows); what it learned is kept as a few numbers (`Calibration`, JSON), so the
registered model and its drift reference carry it without pickle and without changing the
model's decisions: the tuned threshold still cuts the uncalibrated score.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import cache
from typing import Any

import numpy as np

from mlassets.ml.defaults import LABEL_METRICS

METHODS = ("isotonic", "sigmoid", "temperature")
METRICS = LABEL_METRICS  # the metrics of decisions: what confusion counts estimate
# The default method is `TrainingSettings.calibration` (mlassets.ml.defaults), chosen on the
# figures of `make bench` (section `estimation`).
LEVEL = 0.95  # the intervals' coverage
DRAWS = 2_000  # simulated label counts per interval
# Bootstrap refits of the calibrator on resampled validation rows: the interval's calibration
# part (without it, 95 % intervals held the realized F1 on 44 % of churn's shifted batches).
REFITS = 30


@dataclass(frozen=True)
class Calibration:
    """What sklearn's calibrator learned, as numbers: maps the model's raw score to P(positive).

    `response` is the score sklearn calibrated: the Pipeline's `decision_function` when it has
    one (log-odds for gradient boosting), else its positive-class `predict_proba`.
    - isotonic: piecewise linear through (`x`, `y`), constant beyond the ends;
    - sigmoid (Platt): 1 / (1 + exp(a * score + b));
    - temperature: the softmax of `beta` times the logits (binary: (-d, d) or log-probabilities).
    """

    method: str
    response: str
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()
    a: float = 0.0
    b: float = 0.0
    beta: float = 1.0
    rows: int = 0
    positives: int = 0
    # the parameters (x/y, a/b or beta) of each bootstrap refit: how unsure the calibration is
    draws: tuple[Mapping[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"calibration method {self.method!r} is unknown (known: {METHODS})")
        if self.response not in ("decision_function", "predict_proba"):
            raise ValueError(f"calibration response {self.response!r} is unknown")
        if self.method == "isotonic" and (len(self.x) != len(self.y) or not self.x):
            raise ValueError("an isotonic calibration needs as many x as y, at least one")

    def apply(self, score: np.ndarray) -> np.ndarray:
        """P(positive) for raw scores of `self.response`, as sklearn's calibrator gives it."""
        from scipy.special import expit

        s = np.asarray(score, dtype=float)
        if self.method == "isotonic":
            return np.interp(s, self.x, self.y)  # np.interp clips at the ends, as sklearn does
        if self.method == "sigmoid":
            return expit(-(self.a * s + self.b))
        if self.response == "decision_function":  # logits (-d, d)
            return expit(2 * self.beta * s)
        eps = 1e-12  # sklearn's: log(p + eps) for each class
        return expit(self.beta * (np.log(s + eps) - np.log(1 - s + eps)))

    def refits(self) -> list[Calibration]:
        """The bootstrap refits, each a Calibration of its own (none when fit without them)."""
        return [replace(self, **_parameters(d), draws=()) for d in self.draws]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["x"], out["y"] = list(self.x), list(self.y)
        out["draws"] = [
            {k: list(v) if k in ("x", "y") else v for k, v in d.items()} for d in self.draws
        ]
        return out

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> Calibration:
        known = {k: record[k] for k in cls.__dataclass_fields__ if k in record}
        known.update(_parameters(known))
        known["draws"] = tuple(_parameters(d) for d in known.get("draws", ()))
        return cls(**known)


def _parameters(record: Mapping[str, Any]) -> dict[str, Any]:
    """A calibrator's own numbers from `record` (x and y as tuples)."""
    out = {k: record[k] for k in ("a", "b", "beta") if k in record}
    if "x" in record:
        out["x"], out["y"] = tuple(record["x"]), tuple(record["y"])
    return out


def _response(model) -> str:
    """The score sklearn's calibration reads from `model`: decision_function first."""
    return "decision_function" if hasattr(model, "decision_function") else "predict_proba"


def raw_score(model, X, response: str) -> np.ndarray:
    """The uncalibrated score of the Pipeline inside `model` (threshold wrapper unwrapped)."""
    from mlassets.ml.threshold import base_model

    base = base_model(model)
    if response == "decision_function":
        return np.asarray(base.decision_function(X), dtype=float).ravel()
    return np.asarray(base.predict_proba(X), dtype=float)[:, 1]


def fit_calibration(
    model, X, y, method: str, *, refits: int = REFITS, seed: int = 0
) -> Calibration:
    """Calibrate the positive-class probability of `model`'s fitted Pipeline on (X, y), rows it
    was not trained on (the validation set): sklearn's `CalibratedClassifierCV` over the frozen
    Pipeline, its calibrator kept as numbers, with `refits` seeded bootstrap refits (how unsure
    those numbers are, for the intervals). The model itself is untouched.

    The Pipeline scores X once; the calibrator is fit on those scores (`_scores_class`: the
    same numbers sklearn would fit over the Pipeline itself; refits cost no model pass)."""
    if method not in METHODS:
        raise ValueError(f"calibration method {method!r} is unknown (known: {METHODS})")
    from mlassets.ml.threshold import base_model

    y = np.asarray(y)  # sklearn 1.9's temperature scaling reads y[0]: a Series' label 0
    classes = sorted(set(y.tolist()))
    if classes != [0, 1]:
        raise ValueError(
            f"calibration needs labels 0 and 1 among its {len(y):,} rows, found {classes[:5]}"
        )
    response = _response(base_model(model))
    score = raw_score(model, X, response)
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(refits):
        rows = rng.integers(0, len(y), len(y))
        if len(np.unique(y[rows])) == 2:  # a resample with one class cannot be calibrated
            draws.append(_calibrate(score[rows], y[rows], method, response))
    return Calibration(
        method=method,
        response=response,
        rows=int(len(y)),
        positives=int(np.sum(y == 1)),
        draws=tuple(draws),
        **_calibrate(score, y, method, response),
    )


def _calibrate(score: np.ndarray, y: np.ndarray, method: str, response: str) -> dict[str, Any]:
    """The numbers of sklearn's calibrator fit on a frozen model's raw `score` and labels y."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.frozen import FrozenEstimator

    frozen = FrozenEstimator(_scores_class()(response).fit(None))
    fitted = CalibratedClassifierCV(frozen, method=method).fit(score.reshape(-1, 1), y)
    calibrator = fitted.calibrated_classifiers_[0].calibrators[0]
    if method == "isotonic":
        return {
            "x": tuple(float(v) for v in calibrator.X_thresholds_),
            "y": tuple(float(v) for v in calibrator.y_thresholds_),
        }
    if method == "sigmoid":
        return {"a": float(calibrator.a_), "b": float(calibrator.b_)}
    return {"beta": float(np.ravel(calibrator.beta_)[0])}


@cache
def _scores_class() -> type:
    """`Scores` (sklearn imported on first use): a fitted binary classifier whose raw score is
    column 0 of X, a model's precomputed `decision_function` or positive-class `predict_proba`
    as `response` says, so sklearn calibrates exactly what it would over the model without
    running the model again."""
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.utils.metaestimators import available_if

    def has(response: str):
        return lambda self: self.response == response

    class Scores(ClassifierMixin, BaseEstimator):
        def __init__(self, response: str = "decision_function") -> None:
            self.response = response

        def fit(self, X, y=None):
            self.classes_ = np.array([0, 1])
            return self

        @available_if(has("decision_function"))
        def decision_function(self, X) -> np.ndarray:
            return np.asarray(X, dtype=float)[:, 0]

        @available_if(has("predict_proba"))
        def predict_proba(self, X) -> np.ndarray:
            p = np.asarray(X, dtype=float)[:, 0]
            return np.column_stack([1 - p, p])

        def predict(self, X) -> np.ndarray:
            cut = 0.0 if self.response == "decision_function" else 0.5
            return (np.asarray(X, dtype=float)[:, 0] > cut).astype(int)

    return Scores


def probability(model, calibration: Calibration, X) -> np.ndarray:
    """The calibrated P(positive) of each row of X."""
    return calibration.apply(raw_score(model, X, calibration.response))


@dataclass
class Scored:
    """A model's decisions on some rows, with their calibrated probabilities `p` and the same
    under each bootstrap refit of the calibration (`p_draws`): all an estimate needs."""

    p: np.ndarray
    predicted: np.ndarray
    p_draws: list[np.ndarray] = field(default_factory=list)

    def subset(self, rows: np.ndarray) -> Scored:
        return Scored(self.p[rows], self.predicted[rows], [d[rows] for d in self.p_draws])

    def estimate(self, metrics: Sequence[str] = METRICS, seed: int = 0) -> Estimate:
        return estimate(self.p, self.predicted, metrics=metrics, seed=seed, p_draws=self.p_draws)


def score(model, calibration: Calibration, X) -> Scored:
    """Score X once: the model's decisions and its calibrated probabilities (and refits')."""
    raw = raw_score(model, X, calibration.response)
    predicted = (np.asarray(model.predict(X)) == 1).astype(int)
    draws = [c.apply(raw) for c in calibration.refits()]
    return Scored(calibration.apply(raw), predicted, draws)


def _counts_metric(name: str, tp, fn, n1: float, n0: float) -> np.ndarray:
    """A metric from true positives and false negatives, given n1 rows flagged and n0 passed."""
    from mlassets.ml.threshold import count_metric

    tp, fn = np.asarray(tp, float), np.asarray(fn, float)
    return count_metric(name, tp, n1 - tp, fn, n0 - fn)


@dataclass
class Estimate:
    """Estimated metrics at the model's decisions on `rows` unlabelled rows, with intervals.

    `metrics[name]` = {"estimate", "low", "high"}: the expected confusion counts give the
    estimate (as NannyML's CBPE); the interval is where the realized metric falls with
    probability `level`: the labels' own noise on these rows (the label counts' normal
    approximation, a sum of independent Bernoulli(p) per row) and, when the calibration's
    bootstrap refits are given, how unsure the calibration is, propagated through the metric
    by seeded draws. A shift into rows unlike any the model saw is in neither.
    """

    rows: int
    metrics: dict[str, dict[str, float]]
    expected_positive_rate: float
    predicted_positive_rate: float
    level: float = LEVEL

    def value(self, name: str) -> float:
        return self.metrics[name]["estimate"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "metrics": self.metrics,
            "expected_positive_rate": self.expected_positive_rate,
            "predicted_positive_rate": self.predicted_positive_rate,
            "level": self.level,
        }


def estimate(
    p: np.ndarray,
    predicted: np.ndarray,
    *,
    metrics: Sequence[str] = METRICS,
    level: float = LEVEL,
    draws: int = DRAWS,
    seed: int = 0,
    p_draws: Sequence[np.ndarray] = (),
) -> Estimate:
    """CBPE: the metrics expected on rows with calibrated probabilities `p` and the model's
    0/1 decisions `predicted`, with a `level` interval (see `Estimate`); `p_draws`, the same
    rows' probabilities under each bootstrap refit of the calibration, widen it by the
    calibration's own uncertainty (the label draws are spread over them)."""
    p = _probabilities(p, "p")
    flagged = np.asarray(predicted).astype(bool)
    if p.shape != flagged.shape:
        raise ValueError(f"{len(p)} probabilities but {len(flagged)} decisions")
    n = len(p)
    if n == 0:
        nan = float("nan")
        none = {m: {"estimate": nan, "low": nan, "high": nan} for m in metrics}
        return Estimate(0, none, nan, nan, level)
    n1, n0 = float(flagged.sum()), float(n - flagged.sum())
    tp, fn = p[flagged].sum(), p[~flagged].sum()  # expected true positives and false negatives
    rng = np.random.default_rng(seed)
    sources = [_probabilities(d, "p_draws") for d in p_draws] or [p]
    each = -(-draws // len(sources))  # label draws per calibration: at least `draws` in all
    # each refit's expected counts, centred on the estimate's own: the refits bring their spread
    # around it, not the bootstrap's bias, so the interval holds the point it is drawn around
    tp_means = np.array([q[flagged].sum() for q in sources])
    fn_means = np.array([q[~flagged].sum() for q in sources])
    tp_means += tp - tp_means.mean()
    fn_means += fn - fn_means.mean()
    tp_draw, fn_draw = [], []
    for q, tp_k, fn_k in zip(sources, tp_means, fn_means, strict=True):
        q1, q0 = q[flagged], q[~flagged]
        tp_draw.append(rng.normal(tp_k, np.sqrt(np.sum(q1 * (1 - q1))), each))
        fn_draw.append(rng.normal(fn_k, np.sqrt(np.sum(q0 * (1 - q0))), each))
    tp_draw = np.clip(np.concatenate(tp_draw), 0, n1)
    fn_draw = np.clip(np.concatenate(fn_draw), 0, n0)
    tail = (1 - level) / 2 * 100
    out = {}
    for name in metrics:
        point = float(_counts_metric(name, tp, fn, n1, n0))
        low, high = np.percentile(
            _counts_metric(name, tp_draw, fn_draw, n1, n0), [tail, 100 - tail]
        )
        out[name] = {"estimate": point, "low": float(low), "high": float(high)}
    return Estimate(n, out, float(p.mean()), n1 / n, level)


def _probabilities(values, what: str) -> np.ndarray:
    """`values` as probabilities, refused when any is missing or outside [0, 1] (a raw score
    passed by mistake would otherwise give a plausible figure)."""
    p = np.asarray(values, dtype=float)
    bad = ~np.isfinite(p) | (p < -1e-9) | (p > 1 + 1e-9)
    if bad.any():
        shown = ", ".join(f"{v:.4g}" for v in p[bad][:5])
        raise ValueError(
            f"{what} must be probabilities in [0, 1]; {int(bad.sum()):,} are not: {shown}"
        )
    return np.clip(p, 0.0, 1.0)


def realized(y: np.ndarray, predicted: np.ndarray, metrics: Sequence[str] = METRICS) -> dict:
    """The same metrics from true labels (1 = positive), for side-by-side figures."""
    y = np.asarray(y).astype(bool)
    flagged = np.asarray(predicted).astype(bool)
    tp, fn = float(np.sum(y & flagged)), float(np.sum(y & ~flagged))
    n1, n0 = float(flagged.sum()), float((~flagged).sum())
    return {m: float(_counts_metric(m, tp, fn, n1, n0)) for m in metrics}


def estimate_model(
    model, calibration: Calibration, X, *, metrics: Sequence[str] = METRICS, seed: int = 0
) -> tuple[Estimate, Scored]:
    """`estimate` for `model` on rows X, with what it was made from (`Scored`)."""
    scored = score(model, calibration, X)
    return scored.estimate(metrics, seed), scored


def by_batch(
    scored: Scored,
    batches: np.ndarray,
    labels: np.ndarray | None = None,
    *,
    metric: str = "f1",
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Per batch: rows, the estimated `metric` with its interval and, where every row of the
    batch has a label (`labels` NaN where missing), the realized one (with labels, how many
    rows have one: labels that arrive later fill a batch in). For the plot and table."""
    out = []
    batches = np.asarray(batches).astype(str)
    for name in sorted(set(batches)):
        rows = batches == name
        part = scored.subset(rows)
        entry = {
            "batch": name,
            "rows": int(rows.sum()),
            **part.estimate((metric,), seed).metrics[metric],
        }
        entry["realized"] = None
        if labels is not None:
            y = np.asarray(labels, dtype=float)[rows]
            entry["labelled"] = int((~np.isnan(y)).sum())
            if len(y) and not np.isnan(y).any():
                entry["realized"] = realized(y == 1, part.predicted, (metric,))[metric]
        out.append(entry)
    return out


def plot_by_batch(
    entries: list[dict[str, Any]],
    *,
    metric: str = "f1",
    baseline: float | None = None,
    max_drop: float | None = None,
):
    """Estimated (with interval) against realized `metric` per batch: a matplotlib Figure on the
    Agg canvas (no pyplot state, safe in a daemon)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(6.0, 0.6 * len(entries) + 3), 3.8), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    x = np.arange(len(entries))
    est = np.array([e["estimate"] for e in entries], float)
    low = np.array([e["low"] for e in entries], float)
    high = np.array([e["high"] for e in entries], float)
    # a batch mostly outside the training range (`domain`): its estimate is drawn, greyed out
    trusted = np.array([e.get("reliable", True) for e in entries], bool)
    for keep, color, text in (
        (trusted, "tab:blue", f"estimated {metric} (CBPE, 95 % interval)"),
        (~trusted, "lightgrey", "estimate unreliable: rows outside the training range"),
    ):
        if keep.any():
            ax.errorbar(
                x[keep],
                est[keep],
                yerr=[np.maximum(est - low, 0)[keep], np.maximum(high - est, 0)[keep]],
                fmt="o",
                color=color,
                mec="grey" if color == "lightgrey" else color,
                capsize=3,
                label=text,
            )
    real = [(i, e["realized"]) for i, e in enumerate(entries) if e.get("realized") is not None]
    if real:
        ax.plot(*zip(*real, strict=True), "s", color="tab:orange", label=f"realized {metric}")
    if baseline is not None:
        ax.axhline(baseline, color="grey", ls="--", lw=1, label="baseline (test rows)")
        if max_drop is not None:
            ax.axhline(baseline - max_drop, color="tab:red", ls=":", lw=1, label="retrain below")
    ax.set_xticks(x, [e["batch"] for e in entries], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric}: estimated before the labels vs realized, per recent batch", fontsize=9)
    ax.legend(fontsize=7, loc="lower left")
    return fig
