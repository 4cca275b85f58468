"""Drift statistics and the retrain decision: recent rows against the production model's reference.

One function, `drift_report`, serves the `drift_report` asset and `drift_sensor` alike, so what a
person reads in the asset's metadata is exactly what made the sensor launch (or skip) a run.

Why not the seed's rule (two-sample KS per feature at p < 0.05, retrain if any feature fires)?
With six features, six tests at 5 % fire by chance on up to one batch in four even when nothing
changed; and with a million recent rows against a 50,000-row reference, KS calls a gap of 0.006
between the CDFs "significant". So p-values are corrected across features (Benjamini-Hochberg by
default) and a feature only drifts when its effect size is also large enough to matter.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd
from pydantic import Field, field_validator

from mlassets.ml.defaults import LABEL_METRICS, Settings
from mlassets.ml.domain import Domain
from mlassets.ml.records import (
    Degradation,
    DriftDecision,
    EstimatedPerformance,
    dump,
    jsonable,
)
from mlassets.ml.reference import ORIGIN
from mlassets.ml.reference import parts as reference_parts

Correction = Literal["bh", "bonferroni", "none"]
# estimated before labels and reported; `DriftThresholds.metrics` of them decide
ESTIMATED_METRICS = LABEL_METRICS
CORRECTIONS: tuple[str, ...] = get_args(Correction)
MISSING = "<missing>"  # how a missing categorical value is counted: a category of its own
TABLE_COLUMNS = [
    "feature",
    "kind",
    "statistic",
    "p_value",
    "corrected_p",
    "effect_size",
    "psi",
    "drifted",
    "unseen_categories",
]
# With max(n1, n2) above this, scipy's ks_2samp uses the asymptotic distribution; so do we.
_KS_EXACT_MAX_N = 10_000
_PSI_FLOOR = 1e-4  # share given to an empty bin, so PSI stays finite (the usual convention)


class DriftThresholds(Settings):
    """The thresholds of the retrain decision (`DriftConfig`, the asset and sensor config, is this
    model with Dagster's base added: every setting here is settable from run config).

    Defaults and why:
    - `alpha=0.05` after `correction="bh"` (Benjamini-Hochberg): the false discovery rate over
      the features of one report stays at 5 %; `"bonferroni"` bounds the chance of any false
      alarm instead (stricter), `"none"` is the seed's per-feature test.
    - `min_effect_numeric=0.1`: the Wasserstein-1 distance between reference and recent
      values divided by the reference's standard deviation: 0.1 is the whole distribution
      shifted by a tenth of a standard deviation. Evidently's default for numeric columns; unlike a p-value
      it does not shrink to "significant" as the row count grows, so a million rows and twenty
      thousand rows face the same bar.
    - `min_effect_categorical=0.1`: the Jensen-Shannon distance (natural log, in [0, 0.83])
      between the category frequencies; Evidently's default for categorical columns. Moving 10
      points of share between two categories of the fraud mix (30/35/15/20 %) gives 0.09,
      15 points 0.13.
    - `max_metric_drop=0.05`: the production model is degraded when accuracy or F1 on labelled
      recent rows falls more than 0.05 below its baseline (the issue's figure).
    - `min_rows=10_000`: below this many recent rows no retrain is requested, whatever the
      signals say; too few new rows to be worth a training run (the seed's figure).
    - `min_labelled_rows=1_000`: fewer labelled rows give metrics too noisy to act on
      (with 5 % positives, F1 on 1,000 rows has a standard error of about 0.05).
    - `max_eval_rows=100_000`: the model is scored on a seeded sample of at most this many
      labelled rows, said in the report: a 300-tree forest takes 6 s or more to predict a
      million rows, while accuracy on 100,000 rows is known to about +/-0.001 and F1 (5 %
      positives) to about +/-0.005, far inside `max_metric_drop`.
    - `psi_bins=10`: PSI over reference deciles (numeric) or categories, for the record: PSI
      is reported, not used in the decision (its usual 0.1 / 0.25 bands have no error control).
    - `estimated_degradation=True`, `max_estimated_drop=0.05`: before labels arrive, the
      production model is degraded when a metric of `metrics` estimated from its calibrated
      probabilities (`mlassets.ml.estimation`, CBPE) falls more than 0.05 below the same
      estimate on its test rows. In `make bench` (section estimation, benchmarks/RESULTS.md)
      unshifted batches of 10,000 rows put the estimated F1 within 0.009 of the test rows'
      (sd 0.0045; three sd with the test rows' own noise: 0.019 for 10,000 test rows, 0.033
      for the demo's 2,000), and under covariate shift the estimate stays within 0.0055 of
      the realized F1: 0.039 at the demo's size. 0.05 clears that and is the labelled
      signal's bar, so both mean the same drop. Labels judge the rows they cover; the estimate
      decides for the unlabelled rows, and only on at least `min_labelled_rows` of them.
    - `max_outside_share=0.05`: a batch with more than 5 % of its rows outside the production
      model's training range (`mlassets.ml.domain`) has its estimate marked unreliable and does
      not decide. On a real table (bench section estimation: census employment, a model trained
      on ages 0-50, batches with a share of older people) the estimated F1's error was 0.004 at
      5 % and 0.016 at 10 %, where the realized F1 left every interval, ours and NannyML's; 5 % is
      the largest share measured at which they held. Rows of the training population fall
      outside only by chance: 0.00-0.05 % of an unshifted 20,000-row fraud or churn batch.
    """

    alpha: float = Field(default=0.05, gt=0, lt=1, description="Significance after the correction.")
    correction: Correction = Field(
        default="bh", description="bh (Benjamini-Hochberg), bonferroni or none."
    )
    min_effect_numeric: float = Field(
        default=0.1,
        ge=0,
        description="Wasserstein distance / reference std a numeric drift must reach.",
    )
    min_effect_categorical: float = Field(
        default=0.1, ge=0, description="Jensen-Shannon distance a categorical drift must reach."
    )
    max_metric_drop: float = Field(
        default=0.05,
        ge=0,
        description="Accuracy or F1 drop on labelled recent rows that is degraded.",
    )
    min_rows: int = Field(
        default=10_000, ge=0, description="Recent rows needed before any retrain."
    )
    metrics: list[str] = Field(
        default_factory=lambda: ["accuracy", "f1"],
        description="Metrics whose drop (realized on labels, or estimated before them) is "
        "degradation: accuracy, precision, recall, f1.",
    )
    min_labelled_rows: int = Field(
        default=1_000, ge=0, description="Labelled recent rows needed to judge degradation."
    )
    max_eval_rows: int | None = Field(
        default=100_000,
        ge=1,
        description="Labelled rows the production model is scored on (a seeded sample; unset: "
        "all).",
    )
    psi_bins: int = Field(
        default=10, ge=2, description="Bins of the PSI reported per feature (not gated)."
    )
    seed: int = Field(default=0, description="Seed of the evaluation sample and estimates.")
    estimated_degradation: bool = Field(
        default=True,
        description="Retrain when the performance estimated from the production model's "
        "calibrated probabilities drops, before any label arrives (labels decide once they "
        "cover every recent row).",
    )
    max_estimated_drop: float = Field(
        default=0.05,
        ge=0,
        description="Estimated accuracy or F1 drop, against the estimate on the test rows, "
        "that is degraded.",
    )
    max_outside_share: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="Share of a batch's rows outside the production model's training range "
        "(a numeric value beyond it, an unseen category) above which the batch's performance "
        "estimate is marked unreliable and does not decide.",
    )
    window_batches: int = Field(
        default=0,
        ge=0,
        description="Retrain on the source plus the newest N recent batches (0: all of them).",
    )

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, value: list[str]) -> list[str]:
        # a list of Literals is beyond Dagster's config types, so the choice is checked here
        unknown = sorted(set(value) - set(LABEL_METRICS))
        if unknown:
            raise ValueError(f"metrics {unknown} are unknown (known: {', '.join(LABEL_METRICS)})")
        return value


@dataclass
class DriftReport:
    """What `drift_report` found and decided; `reasons[0]` is the decision in one sentence."""

    features: pd.DataFrame
    drifted: list[str]
    degradation: Degradation
    rows: int
    reference_rows: int
    enough_rows: bool
    retrain: bool
    reasons: list[str]
    unseen: dict[str, dict[str, int]] = field(default_factory=dict)
    config: DriftThresholds = field(default_factory=DriftThresholds)
    estimated: EstimatedPerformance = field(default_factory=EstimatedPerformance)
    # which part of the training rows the statistics compare with (`reference.parts`)
    compared: dict[str, Any] = field(default_factory=dict)

    @property
    def degraded(self) -> bool:
        return self.degradation.degraded

    @property
    def estimated_degraded(self) -> bool:
        """The estimate fell too far and counts in the decision (labels do not cover the rows)."""
        return self.estimated.degraded and self.estimated.decides

    @property
    def summary(self) -> str:
        return self.reasons[0] if self.reasons else ""

    def ranked(self) -> pd.DataFrame:
        """Features from most to least drifted: drifted first, then by effect over its minimum."""
        t = self.features.copy()
        t["_score"] = t["effect_size"].astype(float) / np.maximum(_minimum(t, self.config), 1e-12)
        t = t.sort_values(["drifted", "_score"], ascending=False, na_position="last")
        return t.drop(columns="_score").reset_index(drop=True)

    def record(self, skipped_batches: list[dict[str, Any]] | None = None) -> DriftDecision:
        """The report as `drift_report`'s typed value (NaN and infinities become None)."""
        # the typed parts are passed as they are (validated once, in `drift_report`)
        return DriftDecision(
            retrain=self.retrain,
            reasons=self.reasons,
            skipped_batches=skipped_batches or [],
            drifted=self.drifted,
            degraded=self.degraded,
            degradation=self.degradation,
            estimated_degraded=self.estimated_degraded,
            estimated=self.estimated,
            rows=self.rows,
            reference_rows=self.reference_rows,
            compared_with=jsonable(self.compared),
            min_rows=self.config.min_rows,
            enough_rows=self.enough_rows,
            features=jsonable(self.features.to_dict(orient="records")),
            unseen=jsonable(self.unseen),
            config=jsonable(self.config.model_dump()),
        )

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready data (MLflow's `drift_report.json`)."""
        return dump(self.record())


def drift_report(
    reference: pd.DataFrame,
    recent: pd.DataFrame,
    numeric: Sequence[str],
    categorical: Sequence[str],
    *,
    config: DriftThresholds | None = None,
    model: Any = None,
    label: str | None = None,
    positive: Any = 1,
    baseline: Mapping[str, float] | None = None,
    model_inputs: Sequence[str] | None = None,
    estimation: Mapping[str, Any] | None = None,
) -> DriftReport:
    """Compare `recent` rows with the `reference` sample and decide whether to retrain.

    Per feature, on every non-missing row (nothing is subsampled for the statistics):
    - numeric: two-sample KS statistic and p-value (as scipy's `ks_2samp`), effect size =
      Wasserstein-1 distance / reference std, PSI over reference deciles;
    - categorical: chi-square test of homogeneity over the category counts (a missing value is
      the category `<missing>`), effect size = Jensen-Shannon distance, PSI over categories, and
      the recent categories the reference never saw, with their row counts.
    P-values are corrected across features (`config.correction`); a feature drifts when its
    corrected p-value < `alpha` AND its effect size >= its minimum. Numeric missing (and
    infinite) values are dropped: a change in the missing share alone is not tested here.

    Degradation: when `recent[label]` has labels and `model` and `baseline` (metrics by name, e.g.
    the evaluation report's) are given, the model (which predicts 1 for the positive class, as
    mlassets Pipelines do) is scored on the labelled rows' `model_inputs` columns (default: the
    features; a registered mlassets model reads the spec's raw `model_inputs`); a metric of
    `config.metrics` more than `max_metric_drop` below its baseline is degraded.

    Estimated degradation (before labels): when `model` and `estimation` (the version's stored
    calibration and its estimate on the test rows, `baseline["estimation"]`) are given, every
    recent row is scored and the metrics at the model's decisions are estimated from its
    calibrated probabilities (`mlassets.ml.estimation`), with 95 % intervals, per batch
    (`_batch`) and for the decision: on the unlabelled rows when the labelled ones were measured,
    else on every row. An estimate more than `max_estimated_drop` below the test rows' is
    degraded; it counts when it rests on at least `min_labelled_rows` rows the labels do not
    cover and `estimated_degradation` is on.

    Decision: retrain = (any feature drifted, degraded or estimated degraded) and
    len(recent) >= `min_rows`.
    `reasons` spells out the decision first, then every figure behind it.
    """
    cfg = config or DriftThresholds()
    numeric, categorical = list(numeric), list(categorical)
    for name, frame in (("reference", reference), ("recent", recent)):
        missing = [c for c in [*numeric, *categorical] if c not in frame.columns]
        if missing:
            raise KeyError(f"{name} rows lack feature column(s) {missing}")
    overlap = set(numeric) & set(categorical)
    if overlap:
        raise ValueError(f"columns listed as both numeric and categorical: {sorted(overlap)}")

    # against each part of what the model was trained on (`reference.parts`): recent rows drift
    # only when they differ from the part they resemble most
    split = reference_parts(reference)
    by_part = {
        name: _feature_table(rows, recent, numeric, categorical, cfg)
        for name, rows in split.items()
    }
    part = min(by_part, key=lambda name: _distance(by_part[name][0], cfg))
    table, unseen = by_part[part]
    drifted = table.loc[table["drifted"], "feature"].tolist()
    compared = {
        "part": part,
        "parts": {
            name: {"rows": len(split[name]), "drifted": t.loc[t["drifted"], "feature"].tolist()}
            for name, (t, _) in by_part.items()
        },
    }
    reference = reference.drop(columns=ORIGIN, errors="ignore")  # the whole, for what follows

    columns = list(model_inputs) if model_inputs is not None else numeric + categorical
    degradation = _degradation(recent, columns, model, label, positive, baseline, cfg)
    n = int(len(recent))
    domain = Domain.of(reference, numeric, categorical)
    estimated = _estimated(
        recent, columns, model, label, positive, estimation, baseline, cfg, degradation, domain
    )
    # the estimate decides for rows the labels do not measure, only on enough of them, and
    # only where the model was trained (rows of batches mostly outside that are its guess)
    estimated["decides"] = bool(
        cfg.estimated_degradation
        and estimated["evaluated"]
        and estimated["reliable"]
        and not estimated["covered"]
        and estimated["rows"] >= cfg.min_labelled_rows
    )
    estimated_degraded = estimated["degraded"] and estimated["decides"]
    enough = n >= cfg.min_rows
    retrain = bool((drifted or degradation["degraded"] or estimated_degraded) and enough)
    reasons = _reasons(
        table, drifted, degradation, estimated, unseen, n, len(split[part]), enough, retrain, cfg
    )
    if len(split) > 1:
        reasons.insert(1, _parts_line(compared))
    return DriftReport(
        features=table,
        drifted=drifted,
        degradation=Degradation.model_validate(jsonable(degradation)),
        rows=n,
        reference_rows=int(len(reference)),
        compared=compared,
        enough_rows=enough,
        retrain=retrain,
        reasons=reasons,
        unseen=unseen,
        config=cfg,
        estimated=EstimatedPerformance.model_validate(jsonable(estimated)),
    )


def _feature_table(
    reference: pd.DataFrame,
    recent: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    cfg: DriftThresholds,
) -> tuple[pd.DataFrame, dict[str, dict[str, int]]]:
    """Every feature's statistics, corrected p-value and verdict against one `reference`, with
    the categories it never saw."""
    rows, unseen = [], {}
    for col in numeric:
        rows.append({"feature": col, **_numeric_stats(reference[col], recent[col], cfg.psi_bins)})
    for col in categorical:
        stats, counts = _categorical_stats(reference[col], recent[col])
        rows.append({"feature": col, **stats})
        if counts:
            unseen[col] = counts
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS).astype(
        {c: float for c in ("statistic", "p_value", "corrected_p", "effect_size", "psi")}
    )
    table["corrected_p"] = adjust_pvalues(table["p_value"].to_numpy(float), cfg.correction)
    table["drifted"] = (table["corrected_p"] < cfg.alpha) & (
        table["effect_size"] >= _minimum(table, cfg)
    )
    table["unseen_categories"] = table["unseen_categories"].astype("int64")
    return table, unseen


def _minimum(table: pd.DataFrame, cfg: DriftThresholds) -> np.ndarray:
    """Each feature's minimum effect size (numeric or categorical)."""
    return np.where(table["kind"] == "numeric", cfg.min_effect_numeric, cfg.min_effect_categorical)


def _distance(table: pd.DataFrame, cfg: DriftThresholds) -> tuple[int, float]:
    """How far recent rows lie from one part: features drifted, then the largest effect over
    its minimum (what `DriftReport.ranked` sorts by)."""
    effect = table["effect_size"].to_numpy(float) / np.maximum(_minimum(table, cfg), 1e-12)
    largest = float(np.nanmax(effect)) if np.isfinite(effect).any() else 0.0
    return int(table["drifted"].sum()), largest


# --- statistics ---------------------------------------------------------------------------------


def ks_wasserstein(reference: np.ndarray, recent: np.ndarray) -> tuple[float, float, float]:
    """Two-sample KS statistic and p-value, and the Wasserstein-1 distance, from one sort.

    Equal to scipy's `ks_2samp` (two-sided, method "auto") and `wasserstein_distance`, but both
    empirical CDFs are evaluated once on the merged sorted values, which is several times faster
    than calling the two functions on a million rows.
    """
    return _ks_wasserstein_sorted(np.sort(reference), np.sort(recent))


def _ks_wasserstein_sorted(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    from scipy import stats

    n1, n2 = len(a), len(b)
    merged = np.concatenate([a, b])
    merged.sort(kind="stable")  # two sorted runs: a linear merge
    gap = np.abs(
        np.searchsorted(a, merged, side="right") / n1
        - np.searchsorted(b, merged, side="right") / n2
    )
    d = float(gap.max())
    w = float(np.dot(gap[:-1], np.diff(merged)))
    if max(n1, n2) <= _KS_EXACT_MAX_N:
        p = float(stats.ks_2samp(a, b).pvalue)  # small samples: scipy's exact distribution
    else:
        p = float(stats.kstwo.sf(d, round(n1 * n2 / (n1 + n2))))  # as ks_2samp's "asymp"
    return d, min(max(p, 0.0), 1.0), w


def psi(reference_share: np.ndarray, recent_share: np.ndarray) -> float:
    """Population stability index of two share vectors over the same bins (empty bins floored)."""
    r = np.maximum(np.asarray(reference_share, float), _PSI_FLOOR)
    c = np.maximum(np.asarray(recent_share, float), _PSI_FLOOR)
    return float(np.sum((c - r) * np.log(c / r)))


def adjust_pvalues(p_values: Sequence[float] | np.ndarray, method: str = "bh") -> np.ndarray:
    """P-values corrected for testing several features at once; NaN (untested) stays NaN.

    "bh": Benjamini-Hochberg step-up adjusted p-values (controls the false discovery rate);
    "bonferroni": p x m (controls the chance of any false alarm); "none": unchanged.
    """
    if method not in CORRECTIONS:
        raise ValueError(f"correction {method!r} is unknown (known: {CORRECTIONS})")
    p = np.asarray(p_values, dtype=float)
    out = p.copy()
    tested = np.flatnonzero(~np.isnan(p))
    m = len(tested)
    if method == "none" or m == 0:
        return out
    if method == "bonferroni":
        out[tested] = np.minimum(p[tested] * m, 1.0)
        return out
    order = tested[np.argsort(p[tested], kind="stable")]
    scaled = p[order] * m / np.arange(1, m + 1)
    out[order] = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    return out


def _numeric_stats(ref: pd.Series, cur: pd.Series, bins: int) -> dict[str, Any]:
    a = _finite(ref)
    b = _finite(cur)
    base = {"kind": "numeric", "unseen_categories": 0}
    if len(a) == 0 or len(b) == 0:
        nan = math.nan
        return {**base, "statistic": nan, "p_value": nan, "effect_size": nan, "psi": nan}
    a.sort()
    b.sort()
    d, p, w = _ks_wasserstein_sorted(a, b)
    std = float(np.std(a))
    effect = w / std if std > 0 else (0.0 if w == 0 else math.inf)
    # PSI over the reference's deciles: bins (-inf, e1], (e1, e2], ..., (ek, inf)
    edges = np.unique(np.quantile(a, np.linspace(0, 1, bins + 1)[1:-1]))
    share = [
        np.diff(np.searchsorted(x, edges, side="right"), prepend=0, append=len(x)) / len(x)
        for x in (a, b)
    ]
    return {**base, "statistic": d, "p_value": p, "effect_size": effect, "psi": psi(*share)}


def _finite(values: pd.Series) -> np.ndarray:
    x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    return x[np.isfinite(x)]


def _category_counts(values: pd.Series) -> pd.Series:
    counts = values.value_counts(dropna=False, sort=False)
    counts = counts[counts > 0]  # a categorical dtype lists unobserved categories too
    counts.index = [MISSING if pd.isna(k) else str(k) for k in counts.index]
    return counts.groupby(level=0, sort=False).sum()  # e.g. 1 and "1" are one category


def _categorical_stats(ref: pd.Series, cur: pd.Series) -> tuple[dict[str, Any], dict[str, int]]:
    from scipy import stats
    from scipy.spatial.distance import jensenshannon

    rc, cc = _category_counts(ref), _category_counts(cur)
    new = [k for k in cc.index if k not in rc.index and cc[k] > 0]
    unseen = {k: int(cc[k]) for k in sorted(new, key=lambda k: (-cc[k], k))}
    base = {"kind": "categorical", "unseen_categories": len(unseen)}
    if rc.sum() == 0 or cc.sum() == 0:
        nan = math.nan
        return {**base, "statistic": nan, "p_value": nan, "effect_size": nan, "psi": nan}, unseen
    cats = sorted(set(rc.index) | set(cc.index))
    table = np.array([rc.reindex(cats, fill_value=0), cc.reindex(cats, fill_value=0)], float)
    share = table / table.sum(axis=1, keepdims=True)
    if len(cats) > 1:
        chi2, p, _, _ = stats.chi2_contingency(table, correction=False)
    else:
        chi2, p = 0.0, 1.0
    return {
        **base,
        "statistic": float(chi2),
        "p_value": float(p),
        "effect_size": float(jensenshannon(share[0], share[1])),
        "psi": psi(share[0], share[1]),
    }, unseen


# --- performance on labelled recent rows --------------------------------------------------------


def _degradation(
    recent: pd.DataFrame,
    columns: list[str],
    model: Any,
    label: str | None,
    positive: Any,
    baseline: Mapping[str, float] | None,
    cfg: DriftThresholds,
) -> dict[str, Any]:
    """Score `model` on the labelled recent rows and compare with `baseline`."""
    from mlassets.ml.estimation import realized

    labelled = recent[label].notna() if label and label in recent else None
    n_labelled = int(labelled.sum()) if labelled is not None else 0
    out: dict[str, Any] = {
        "evaluated": False,
        "degraded": False,
        "labelled_rows": n_labelled,
        "evaluated_rows": 0,
        "sampled": False,
        "max_drop": cfg.max_metric_drop,
        "metrics": {},
        "note": "",
    }
    if n_labelled == 0:
        out["note"] = "no labelled recent rows: the model's performance was not measured"
        return out
    if model is None or not baseline:
        what = "no production model" if model is None else "no baseline metrics"
        out["note"] = f"{n_labelled:,} labelled recent rows but {what}: performance not measured"
        return out
    if n_labelled < cfg.min_labelled_rows:
        out["note"] = (
            f"only {n_labelled:,} labelled recent rows (< {cfg.min_labelled_rows:,} needed): "
            "metrics too noisy to act on, performance not measured"
        )
        return out
    index = _eval_sample(np.flatnonzero(labelled.to_numpy()), cfg)
    out["sampled"] = len(index) < n_labelled
    rows = recent.iloc[index][[*columns, label]]  # copies only the rows scored
    y = (rows[label] == positive).to_numpy()
    pred = np.asarray(model.predict(rows[columns])) == 1
    current = realized(y, pred)
    out.update(evaluated=True, evaluated_rows=int(len(rows)), positive_rate=float(y.mean()))
    for name in cfg.metrics:
        if name not in baseline:
            out["metrics"][name] = {"baseline": None, "current": current[name], "drop": None}
            continue
        drop = float(baseline[name]) - current[name]
        out["metrics"][name] = {
            "baseline": float(baseline[name]),
            "current": current[name],
            "drop": drop,
            "degraded": drop > cfg.max_metric_drop,
        }
    out["degraded"] = any(m.get("degraded") for m in out["metrics"].values())
    if out["sampled"]:
        out["note"] = (
            f"scored on a seeded sample of {len(rows):,} of the {n_labelled:,} labelled rows "
            f"(max_eval_rows={cfg.max_eval_rows:,})"
        )
    return out


def _eval_sample(index: np.ndarray, cfg: DriftThresholds) -> np.ndarray:
    """At most `max_eval_rows` of the row positions `index`: a seeded sample, in order."""
    if cfg.max_eval_rows is None or len(index) <= cfg.max_eval_rows:
        return index
    rng = np.random.default_rng(cfg.seed)
    return np.sort(rng.choice(index, cfg.max_eval_rows, replace=False))


def _estimated(
    recent: pd.DataFrame,
    columns: list[str],
    model: Any,
    label: str | None,
    positive: Any,
    estimation: Mapping[str, Any] | None,
    baseline: Mapping[str, float] | None,
    cfg: DriftThresholds,
    degradation: Mapping[str, Any],
    domain: Domain | None = None,
) -> dict[str, Any]:
    """The metrics estimated from calibrated probabilities (CBPE) against the test rows'
    estimate: on every recent row, or only on the unlabelled ones when `degradation` measured
    the labelled ones (labels judge their own rows). Per batch on every row, for the plot.

    With `domain` (the training rows' `domain.Domain`), a batch with more than
    `max_outside_share` of its rows outside it has its estimate marked unreliable: the deciding
    estimate is made on the other batches' rows, and on none (`reliable` False) when no batch is
    left."""
    from mlassets.ml.domain import reliability
    from mlassets.ml.estimation import Calibration, by_batch, score

    out: dict[str, Any] = {
        "evaluated": False,
        "degraded": False,
        "reliable": True,
        "rows": 0,
        "scope": "recent rows, labelled or not",
        "covered": False,
        "sampled": False,
        "max_drop": cfg.max_estimated_drop,
        "metrics": {},
        "by_batch": [],
        "note": "",
    }
    test = (estimation or {}).get("test") or {}
    if not (estimation or {}).get("calibration") or not test.get("metrics"):
        out["note"] = (
            "no performance estimate: the production version carries no calibration "
            "(registered before mlassets calibrated its probabilities)"
        )
        return out
    if model is None or len(recent) == 0:
        out["note"] = "no performance estimate: " + (
            "no recent rows" if len(recent) == 0 else "no production model"
        )
        return out
    index = _eval_sample(np.arange(len(recent)), cfg)
    features = [*domain.numeric, *domain.categorical] if domain is not None else []
    extra = (label, "_batch", *features)
    keep = list(dict.fromkeys([*columns, *(c for c in extra if c and c in recent)]))
    rows = recent.iloc[index][keep]  # copies only the rows and columns scored
    cal = Calibration.from_dict(estimation["calibration"])
    scored = score(model, cal, rows[columns])
    batches = rows["_batch"].to_numpy() if "_batch" in rows else np.full(len(rows), "recent rows")
    trust = None
    if domain is not None:
        trust = reliability(domain.outside(rows), batches, cfg.max_outside_share)
        out["reliability"] = trust.to_dict()
    judge = np.ones(len(rows), dtype=bool)
    if degradation["evaluated"] and label in rows:
        unlabelled = rows[label].isna().to_numpy()
        if unlabelled.any():
            judge = unlabelled
            out["scope"] = "unlabelled recent rows (the labelled ones are measured)"
        else:
            out["covered"] = True
            out["scope"] = "recent rows, every one labelled"
            out["note"] = (
                "labels cover every recent row: the realized figures decide, the estimate is "
                "shown beside them"
            )
    if trust is not None and trust.unreliable:
        if (judge & trust.reliable).any():
            judge = judge & trust.reliable
            marked = len(trust.unreliable)
            out["scope"] += f", in the batches whose estimate is reliable ({marked} marked not)"
        else:  # shown, never deciding: every row it rests on is in an unreliable batch
            out["reliable"] = False
    judged = scored if judge.all() else scored.subset(judge)
    est = judged.estimate(ESTIMATED_METRICS, cfg.seed)
    out.update(evaluated=bool(est.rows), rows=int(est.rows), sampled=len(rows) < len(recent))
    out["expected_positive_rate"] = est.expected_positive_rate
    out["predicted_positive_rate"] = est.predicted_positive_rate
    out["calibration"] = cal.method
    for name in ESTIMATED_METRICS if est.rows else ():
        figures = dict(est.metrics[name])
        reference = test["metrics"].get(name, {}).get("estimate")
        figures["baseline"] = reference
        figures["baseline_realized"] = (baseline or {}).get(name)
        if reference is not None:
            figures["drop"] = float(reference) - figures["estimate"]
            # every metric is estimated and shown; those of `metrics` decide
            figures["degraded"] = name in cfg.metrics and figures["drop"] > cfg.max_estimated_drop
        out["metrics"][name] = figures
    out["degraded"] = any(m.get("degraded") for m in out["metrics"].values())
    if est.rows and est.rows < cfg.min_labelled_rows:
        out["note"] = (
            f"estimated on only {est.rows:,} {out['scope']} (< {cfg.min_labelled_rows:,}): too "
            "few to act on, shown only"
        )
    if "_batch" in rows:
        labels = None
        if label and label in rows:
            known = rows[label].notna().to_numpy()
            labels = np.where(known, (rows[label] == positive).to_numpy(), np.nan)
        metric = "f1" if "f1" in cfg.metrics else cfg.metrics[0]
        out["by_batch"] = by_batch(scored, batches, labels, metric=metric, seed=cfg.seed)
        out["by_batch_metric"] = metric
        for entry in out["by_batch"] if trust is not None else ():
            verdict = trust.batches[entry["batch"]]
            entry["outside_share"] = verdict["share"]
            entry["reliable"] = verdict["reliable"]
            if not verdict["reliable"]:
                entry["unreliable"] = verdict["reason"]
    if out["sampled"]:
        sample = (
            f"estimated on a seeded sample of {len(rows):,} of the {len(recent):,} recent rows "
            f"(max_eval_rows={cfg.max_eval_rows:,})"
        )
        out["note"] = f"{out['note']}; {sample}" if out["note"] else sample
    return out


def estimate_phrase(estimated: Mapping[str, Any], name: str = "f1") -> str:
    """'estimated f1 0.871 [0.852, 0.889] vs 0.880 on the test rows', or '' when not estimated."""
    m = estimated.get("metrics", {}).get(name) if estimated.get("evaluated") else None
    if not m:
        return ""
    base = f" vs {m['baseline']:.3f} on the test rows" if m.get("baseline") is not None else ""
    return f"estimated {name} {m['estimate']:.3f} [{m['low']:.3f}, {m['high']:.3f}]{base}"


# --- reasons ------------------------------------------------------------------------------------


def _p(p: float) -> str:
    if p != p:
        return "nan"
    if p == 0:
        return "< 1e-300"  # below what a float holds
    return f"{p:.3g}" if p >= 1e-4 else f"{p:.1e}"


def _feature_line(r: pd.Series, cfg: DriftThresholds, verdict: str) -> str:
    numeric = r["kind"] == "numeric"
    stat = f"KS D = {r['statistic']:.4f}" if numeric else f"chi-square = {r['statistic']:,.1f}"
    effect = "Wasserstein/std" if numeric else "Jensen-Shannon"
    minimum = cfg.min_effect_numeric if numeric else cfg.min_effect_categorical
    cmp_p = "<" if r["corrected_p"] < cfg.alpha else ">="
    cmp_e = ">=" if r["effect_size"] >= minimum else "<"
    corr = {"bh": "BH-corrected", "bonferroni": "Bonferroni-corrected", "none": "uncorrected"}
    return (
        f"{r['feature']} {verdict}: {stat}, {corr[cfg.correction]} p = {_p(r['corrected_p'])} "
        f"{cmp_p} {cfg.alpha}, {effect} = {r['effect_size']:.3f} {cmp_e} {minimum}, "
        f"PSI = {r['psi']:.3f}"
    )


def _reasons(
    table: pd.DataFrame,
    drifted: list[str],
    deg: dict[str, Any],
    est: dict[str, Any],
    unseen: dict[str, dict[str, int]],
    rows: int,
    reference_rows: int,
    enough: bool,
    retrain: bool,
    cfg: DriftThresholds,
) -> list[str]:
    degraded = [k for k, m in deg["metrics"].items() if m.get("degraded")]
    estimated_down = [k for k, m in est["metrics"].items() if m.get("degraded")]
    signals = []
    if drifted:
        signals.append(f"feature drift in {', '.join(drifted)}")
    if degraded:
        signals.append(f"performance degraded ({', '.join(degraded)})")
    if estimated_down and est["decides"]:
        signals.append(
            "estimated_degradation before labels ("
            + ", ".join(_estimate_change(k, est["metrics"][k]) for k in estimated_down)
            + ")"
        )
    volume = f"{rows:,} recent rows {'>=' if enough else '<'} {cfg.min_rows:,} required"
    if rows == 0:
        return [f"no retrain: nothing to compare ({volume})", f"volume: {volume}"]
    if retrain:
        head = f"retrain: {' and '.join(signals)}; {volume}"
    elif signals:
        head = f"no retrain: {' and '.join(signals)}, but too few rows ({volume})"
    else:
        head = f"no retrain: no feature drifted and {_performance(deg, est, cfg)}; {volume}"
    reasons = [head]

    tested = table[table["p_value"].notna()]
    for _, r in table.iterrows():
        if r["p_value"] != r["p_value"]:
            reasons.append(f"{r['feature']}: not tested (no non-missing values on one side)")
        elif r["drifted"]:
            reasons.append(_feature_line(r, cfg, "drifted"))
        elif r["corrected_p"] < cfg.alpha:
            reasons.append(
                _feature_line(r, cfg, "differs significantly but by too little to count as drift")
            )
    if not drifted and len(tested):
        low = tested.loc[tested["corrected_p"].idxmin()]
        reasons.append(
            f"no feature drifted among {len(tested)} tested on {rows:,} recent vs "
            f"{reference_rows:,} reference rows: smallest corrected p = {_p(low['corrected_p'])} "
            f"({low['feature']}), largest effect = "
            + ", ".join(
                f"{r['feature']} {r['effect_size']:.3f}"
                for _, r in tested.nlargest(1, "effect_size").iterrows()
            )
            + f" (minimum {cfg.min_effect_numeric} numeric, {cfg.min_effect_categorical} categorical)"
        )
    for col, counts in unseen.items():
        total = sum(counts.values())
        shown = ", ".join(f"{k!r} ({v:,})" for k, v in list(counts.items())[:5])
        more = f" and {len(counts) - 5} more" if len(counts) > 5 else ""
        reasons.append(
            f"{col}: {len(counts)} categor{'y' if len(counts) == 1 else 'ies'} unseen in the "
            f"reference, in {total:,} recent rows ({total / max(rows, 1):.1%}): {shown}{more}"
        )

    if deg["evaluated"]:
        for name, m in deg["metrics"].items():
            if m["baseline"] is None:
                reasons.append(f"{name} = {m['current']:.4f}: no baseline to compare with")
                continue
            verdict = "degraded" if m["degraded"] else "holds"
            cmp = ">" if m["degraded"] else "<="
            reasons.append(
                f"{name} {verdict}: {m['baseline']:.4f} -> {m['current']:.4f} on "
                f"{deg['evaluated_rows']:,} labelled rows, drop {m['drop']:+.4f} {cmp} "
                f"{cfg.max_metric_drop}"
            )
    if deg["note"]:
        reasons.append(deg["note"])
    if est["evaluated"]:
        for name, m in est["metrics"].items():
            reasons.append(_estimate_line(name, m, est, cfg))
        for name, batch in (est.get("reliability") or {}).get("batches", {}).items():
            if not batch["reliable"]:
                reasons.append(
                    f"estimate unreliable for {name}: {batch['reason']}; the model's "
                    "probabilities there are a guess, so estimated_degradation does not decide "
                    "on this batch (feature drift and labels still do)"
                )
        if not est["decides"] and est["degraded"]:
            if not cfg.estimated_degradation:
                why = "estimated_degradation is off"
            elif not est["reliable"]:
                why = "every batch it rests on is unreliable (see above)"
            elif est["covered"]:
                why = "labels cover every recent row, so the realized figures decide"
            else:
                why = (
                    f"it rests on {est['rows']:,} {est['scope']}, fewer than "
                    f"{cfg.min_labelled_rows:,}"
                )
            reasons.append(f"the estimate does not decide: {why}")
    if est["note"]:
        reasons.append(est["note"])
    reasons.append(f"volume: {volume}")
    return reasons


def _performance(deg: Mapping[str, Any], est: Mapping[str, Any], cfg: DriftThresholds) -> str:
    """What the head says of performance when no signal fired: measured on labels, estimated,
    or neither, with the figure that says so."""
    name = "f1" if "f1" in cfg.metrics else cfg.metrics[0]
    parts = []
    if deg["evaluated"] and name in deg["metrics"]:
        m = deg["metrics"][name]
        parts.append(f"{name} {m['current']:.3f} on {deg['evaluated_rows']:,} labelled rows")
    phrase = estimate_phrase(est, name)
    if phrase and not est.get("reliable", True):
        phrase += ", unreliable: " + _outside_phrase(est)
    if phrase and est.get("decides"):
        parts.append(f"{phrase} on {est['rows']:,} {est['scope'].split(' (')[0]}")
    said = f"performance is not degraded ({'; '.join(parts)})" if parts else ""
    if not said:
        said = "performance was not measured"
    if phrase and not est.get("decides"):
        said += f" ({phrase}, not deciding)"
    return said


def _parts_line(compared: Mapping[str, Any]) -> str:
    """'compared with the part of the training rows recent rows resemble most: source (4,213
    rows; drifted against landed batches (8,402 rows): feature_1, feature_2)'."""
    part, parts = compared["part"], compared["parts"]
    others = "; ".join(
        f"against {name} ({p['rows']:,} rows): "
        + (", ".join(p["drifted"]) + " drifted" if p["drifted"] else "no feature drifted")
        for name, p in parts.items()
        if name != part
    )
    return (
        f"compared with the part of the training rows the recent rows resemble most: {part} "
        f"({parts[part]['rows']:,} reference rows); {others}"
    )


def _outside_phrase(est: Mapping[str, Any]) -> str:
    """'34.1% of rows outside the training range: feature_2 above 845.2 (30.2%)'."""
    from mlassets.ml.domain import describe

    return describe(est["reliability"]["outside"])


def _estimate_change(name: str, m: Mapping[str, Any]) -> str:
    return f"{name} {m['baseline']:.4f} -> {m['estimate']:.4f} [{m['low']:.4f}, {m['high']:.4f}]"


def _estimate_line(
    name: str, m: Mapping[str, Any], est: Mapping[str, Any], cfg: DriftThresholds
) -> str:
    interval = f"[{m['low']:.4f}, {m['high']:.4f}] (95 %)"
    where = f"on {est['rows']:,} {est['scope']}, from {est['calibration']}-calibrated probabilities"
    if m.get("baseline") is None:
        return f"estimated {name} = {m['estimate']:.4f} {interval} {where}: no baseline to compare with"
    if name not in cfg.metrics:  # reported beside the deciding metrics
        return (
            f"estimated {name} = {m['estimate']:.4f} {interval} (test rows {m['baseline']:.4f}; "
            "reported, not a retrain metric)"
        )
    verdict = "degraded" if m["degraded"] else "holds"
    cmp = ">" if m["degraded"] else "<="
    realized = (
        f"; realized on the test rows {m['baseline_realized']:.4f}"
        if m.get("baseline_realized") is not None
        else ""
    )
    return (
        f"estimated {name} {verdict} (estimated_degradation): {m['baseline']:.4f} estimated on "
        f"the test rows -> {m['estimate']:.4f} {interval} {where}, drop {m['drop']:+.4f} {cmp} "
        f"{cfg.max_estimated_drop}{realized}"
    )


# --- plots, reference samples, fingerprints -----------------------------------------------------


def plot_drift(report: DriftReport, reference: pd.DataFrame, recent: pd.DataFrame, top_k: int = 4):
    """The `top_k` most drifted features, reference vs recent: histograms or category bars.

    Shares (not counts) are drawn, so a 50,000-row reference and a million recent rows compare;
    the reference is the part of the training rows the report compared with.
    Numeric tails beyond the 0.5th / 99.5th percentiles are folded into the end bins.
    Returns a matplotlib Figure on the Agg canvas (no pyplot state, safe in a daemon).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    parts = reference_parts(reference)  # the part the report compared with, drawn
    reference = parts.get(report.compared.get("part"), next(iter(parts.values())))
    top = report.ranked().head(max(int(top_k), 1))
    k = max(len(top), 1)
    cols = min(k, 2)
    nrows = math.ceil(k / cols)
    fig = Figure(figsize=(6.0 * cols, 3.6 * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    if top.empty:
        fig.add_subplot().text(0.5, 0.5, "no features", ha="center", va="center")
        return fig
    for i, (_, r) in enumerate(top.iterrows()):
        ax = fig.add_subplot(nrows, cols, i + 1)
        col = r["feature"]
        if r["kind"] == "numeric":
            a, b = _finite(reference[col]), _finite(recent[col])
            both = np.concatenate([np.quantile(x, [0.005, 0.995]) for x in (a, b) if len(x)])
            lo, hi = (float(both.min()), float(both.max())) if len(both) else (0.0, 1.0)
            edges = _bin_edges(lo, hi, integers=all(np.all(x == np.round(x)) for x in (a, b)))
            for x, name, color in ((a, "reference", "tab:blue"), (b, "recent", "tab:orange")):
                if len(x):
                    h, _ = np.histogram(np.clip(x, edges[0], edges[-1]), edges)
                    ax.stairs(
                        h / len(x),
                        edges,
                        label=name,
                        color=color,
                        fill=name == "reference",
                        alpha=0.45 if name == "reference" else 1.0,
                    )
            ax.set_ylabel("share of rows")
            effect = "Wasserstein/std"
        else:
            rc, cc = _category_counts(reference[col]), _category_counts(recent[col])
            rs, cs = rc / max(rc.sum(), 1), cc / max(cc.sum(), 1)
            cats = pd.concat([rs, cs], axis=1).fillna(0).max(axis=1).nlargest(12).index
            x = np.arange(len(cats))
            ax.bar(
                x - 0.2, rs.reindex(cats, fill_value=0), 0.4, label="reference", color="tab:blue"
            )
            ax.bar(x + 0.2, cs.reindex(cats, fill_value=0), 0.4, label="recent", color="tab:orange")
            ax.set_xticks(x, [str(c) for c in cats], rotation=30, ha="right")
            ax.set_ylabel("share of rows")
            effect = "Jensen-Shannon"
        verdict = "DRIFTED" if r["drifted"] else "no drift"
        ax.set_title(
            f"{col}: {verdict}\n{effect} {r['effect_size']:.3f}, corrected p "
            f"{_p(r['corrected_p'])}, PSI {r['psi']:.3f}",
            fontsize=9,
        )
        ax.legend(fontsize=8)
    return fig


def _bin_edges(lo: float, hi: float, integers: bool, bins: int = 40) -> np.ndarray:
    """About `bins` equal bins over [lo, hi]; whole-number-wide and centred for integer data."""
    if not integers:
        return np.linspace(lo, hi if hi > lo else lo + 1, bins + 1)
    width = max(1.0, math.ceil((hi - lo) / bins))
    return np.arange(math.floor(lo) - 0.5, hi + width, width)


def reference_sample(
    features_df: pd.DataFrame,
    columns: Sequence[str],
    max_rows: int,
    seed: int = 0,
    parts: Any = None,
) -> pd.DataFrame:
    """The reference stored with a model: `columns` of at most `max_rows` seeded random rows,
    with, given each row's part of the training rows (`parts`, `reference.origins`), that part
    in the column `reference.ORIGIN`.

    A sample keeps what is stored and compared small; 50,000 rows pin a decile or a category
    share to about +/-0.002, far below the effect-size minimums. Rows keep their original order.
    """
    columns = list(columns)
    missing = [c for c in columns if c not in features_df.columns]
    if missing:
        raise KeyError(f"reference columns {missing} are not in the features")
    if max_rows < 1:
        raise ValueError(f"max_rows must be positive, got {max_rows}")
    df, rows = features_df, slice(None)
    if len(df) > max_rows:  # rows first, then columns: never a copy of every row's columns
        rng = np.random.default_rng(seed)
        rows = np.sort(rng.choice(len(df), max_rows, replace=False))
        df = df.iloc[rows]
    df = df[columns].reset_index(drop=True)
    if parts is not None:
        df[ORIGIN] = pd.Categorical(parts)[rows]
    return df


def batches_fingerprint(batches: Iterable[tuple[str, str]]) -> str:
    """A stable id of a set of (batch name, content hash) pairs, e.g. a sensor's run_key.

    Order-independent; a renamed or rewritten batch changes it. Same recipe as
    `mlassets.ml.landing.batches_key`, so both give the same id for the same batches.
    """
    h = hashlib.sha256()
    for name, digest in sorted((str(n), str(d)) for n, d in batches):
        h.update(f"{name}:{digest};".encode())
    return h.hexdigest()[:16]
