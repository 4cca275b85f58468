"""Deeper evaluation: tuned threshold inside the model, fairness, importance, calibration, report."""

import os

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"


import numpy as np
import pandas as pd
import pytest

from mlassets.ml import explain, fairness, report, threshold
from mlassets.ml.evaluation import evaluate
from mlassets.ml.training import (
    SKOPS_TRUSTED_TYPES,
    build_pipeline,
    make_estimator,
    untrusted_types,
)
from mlassets.synthetic import fraud_frame
from mlassets_tests.html_page import read_page

pytestmark = pytest.mark.unit

NUMERIC = ["feature_1", "feature_2", "total_purchases", "noise"]
CATEGORICAL = ["category"]
INPUTS = NUMERIC + CATEGORICAL
# Types a thresholded model needs beyond training.SKOPS_TRUSTED_TYPES: none (skops trusts
# FixedThresholdClassifier and FrozenEstimator by default). The test below keeps this honest.
EXTRA_SKOPS_TYPES: list[str] = []


@pytest.fixture(scope="module")
def data():
    """Train / validation / test frames of the fraud schema plus a pure-noise input column."""
    df = fraud_frame(5000, seed=11)
    df["noise"] = np.random.default_rng(0).normal(size=len(df))
    return df.iloc[:3000], df.iloc[3000:4000], df.iloc[4000:]


@pytest.fixture(scope="module")
def model(data):
    train, _, _ = data
    forest = make_estimator("random_forest", {"n_estimators": 40, "max_depth": 8}, seed=0)
    return build_pipeline(NUMERIC, CATEGORICAL, forest).fit(train[INPUTS], train["label"])


@pytest.fixture(scope="module")
def tuned(model, data):
    _, val, _ = data
    return threshold.tune_threshold(model, val[INPUTS], val["label"], metric="f1")


# --- threshold -------------------------------------------------------------------------------


def test_tuned_threshold_maximises_the_metric_on_validation(model, data, tuned):
    from sklearn.metrics import f1_score

    _, val, _ = data
    t, table = tuned
    assert 0 < t < 1
    assert table.loc[table["chosen"], "threshold"].item() == t
    assert table["score"].max() == pytest.approx(table.loc[table["chosen"], "score"].item())
    s = threshold.scores(model, val[INPUTS])
    assert table.loc[table["chosen"], "f1"].item() == pytest.approx(
        f1_score(val["label"], (s >= t).astype(int))
    )


def test_with_threshold_wraps_without_refitting(model, data, tuned):
    _, _, test = data
    t, _ = tuned
    wrapped = threshold.with_threshold(model, t)
    assert threshold.base_model(wrapped) is model
    assert threshold.decision_threshold(wrapped) == t
    s = model.predict_proba(test[INPUTS])[:, 1]
    np.testing.assert_array_equal(wrapped.predict(test[INPUTS]), (s >= t).astype(int))
    # re-wrapping replaces the threshold instead of stacking wrappers
    again = threshold.with_threshold(wrapped, 0.2)
    assert threshold.base_model(again) is model and again.threshold == 0.2


@pytest.mark.integration
def test_threshold_travels_with_the_model_through_mlflow_skops(
    model, data, tuned, tmp_path, monkeypatch
):
    import mlflow

    # MLflow gates every format, skops included, behind this flag; mlassets' own loaders lift
    # it only after checking the files (mlassets.ml.registry). Here: MLflow's own round trip.
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")

    _, _, test = data
    t, _ = tuned
    wrapped = threshold.with_threshold(model, t)
    assert untrusted_types(wrapped) == EXTRA_SKOPS_TYPES
    path = tmp_path / "model"
    mlflow.sklearn.save_model(
        wrapped,
        str(path),
        serialization_format="skops",
        skops_trusted_types=SKOPS_TRUSTED_TYPES + EXTRA_SKOPS_TYPES,
        pip_requirements=mlflow.sklearn.get_default_pip_requirements(include_skops=True),
    )
    assert (path / "model.skops").exists()
    loaded = mlflow.pyfunc.load_model(str(path))
    got = np.asarray(loaded.predict(test[INPUTS])).ravel()
    np.testing.assert_array_equal(got, wrapped.predict(test[INPUTS]))
    assert loaded.get_raw_model().threshold == t


@pytest.mark.integration
def test_a_low_threshold_saved_in_the_model_changes_its_predictions(
    model, data, tmp_path, monkeypatch
):
    import mlflow

    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")

    _, _, test = data
    low = threshold.with_threshold(model, 0.05)
    path = tmp_path / "low"
    mlflow.sklearn.save_model(
        low,
        str(path),
        serialization_format="skops",
        skops_trusted_types=SKOPS_TRUSTED_TYPES + EXTRA_SKOPS_TYPES,
        pip_requirements=mlflow.sklearn.get_default_pip_requirements(include_skops=True),
    )
    got = np.asarray(mlflow.pyfunc.load_model(str(path)).predict(test[INPUTS])).ravel()
    assert got.sum() > model.predict(test[INPUTS]).sum()


def test_one_se_rule_moves_only_as_far_as_the_data_ask():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 2000)
    grid = np.round(np.linspace(0.01, 0.99, 99), 4)
    # well separated scores: every cut between the classes is as good; keep the default
    clean = np.where(y == 1, rng.uniform(0.7, 1.0, 2000), rng.uniform(0.0, 0.3, 2000))
    table = threshold.threshold_table(y, clean, grid)
    table["chosen"] = np.isclose(table["threshold"], 0.5)
    chosen, best, se = threshold.one_se_threshold(y, clean, table, resamples=50, seed=0)
    assert chosen == 0.5 and se == pytest.approx(0.0)
    # scores shifted so the best cut is far from 0.5: the rule must follow the data
    shifted = np.clip(clean - 0.45, 0, 1)
    t, table = threshold.tune_threshold(DummyScorer(shifted), shifted, y)
    chosen, best, se = threshold.one_se_threshold(y, shifted, table, resamples=50, seed=0)
    assert best == t and chosen < 0.3
    assert table.loc[np.isclose(table["threshold"], chosen), "score"].item() >= (
        table["score"].max() - se
    )
    assert threshold.one_se_threshold(y, shifted, table, resamples=0) == (t, t, 0.0)


class DummyScorer:
    """A fitted 'model' whose positive-class probability is the given scores."""

    classes_ = np.array([0, 1])

    def __init__(self, s):
        self.s = np.asarray(s)

    def predict_proba(self, X):
        return np.c_[1 - self.s, self.s]


def test_metrics_at_default_and_tuned(model, data, tuned):
    _, _, test = data
    t, _ = tuned
    s = threshold.scores(model, test[INPUTS])
    table = threshold.metrics_at(test["label"], s, {"default": 0.5, "tuned": t})
    assert list(table.index) == ["default", "tuned"]
    assert table.loc["tuned", "threshold"] == t
    assert table["roc_auc"].nunique() == 1


# --- champion / challenger -------------------------------------------------------------------


@pytest.mark.integration
def test_compare_fails_a_much_weaker_challenger_and_passes_without_baseline(model, data):
    from sklearn.dummy import DummyClassifier

    train, _, test = data
    champion = evaluate(model, test[INPUTS], test["label"])["metrics"]
    weak = DummyClassifier(strategy="stratified", random_state=0).fit(train[INPUTS], train["label"])
    challenger = evaluate(weak, test[INPUTS], test["label"])["metrics"]

    ci = report.bootstrap(
        test["label"],
        weak.predict(test[INPUTS]),
        model.predict(test[INPUTS]),
        metric="f1",
        resamples=300,
        seed=1,
    )
    assert ci[0] <= ci[2] <= ci[1] < 0  # the whole interval says "worse"
    assert ci == report.bootstrap(
        test["label"], weak.predict(test[INPUTS]), model.predict(test[INPUTS]), "f1", 300, 1
    )

    verdict = report.compare(challenger, champion, primary="f1", interval=ci)
    assert not verdict.passed
    assert "f1" in verdict.message and "FAILS" in verdict.message
    assert verdict.figures["difference"] < -0.3
    assert verdict.interval["high"] < 0

    first = report.compare(challenger, None)
    assert first.passed and "no baseline" in first.message


def test_compare_tolerance():
    base = {"f1": 0.80}
    assert report.compare({"f1": 0.80}, base).passed
    assert not report.compare({"f1": 0.79}, base).passed
    assert report.compare({"f1": 0.79}, base, tolerance=0.02).passed
    assert not report.compare({"f1": 0.81}, base, tolerance=-0.02).passed  # must improve by 0.02
    assert report.compare({"f1": 0.83}, base, tolerance=-0.02).passed
    with pytest.raises(KeyError):
        report.compare({"accuracy": 0.9}, base)


def test_bootstrap_on_scores():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    good = y + rng.normal(0, 0.5, 400)
    bad = rng.normal(size=400)
    low, high, mean = report.bootstrap(y, good, bad, metric="roc_auc", resamples=200, seed=0)
    assert 0 < low <= mean <= high


# --- fairness --------------------------------------------------------------------------------


def _group(name: str, n: int, positives: int, tpr: float, fpr: float) -> pd.DataFrame:
    """`n` rows of group `name` whose predictions have exactly the given TPR and FPR."""
    y = np.r_[np.ones(positives, int), np.zeros(n - positives, int)]
    hits = round(tpr * positives)
    false_alarms = round(fpr * (n - positives))
    pred = np.r_[
        np.ones(hits, int),
        np.zeros(positives - hits, int),
        np.ones(false_alarms, int),
        np.zeros(n - positives - false_alarms, int),
    ]
    return pd.DataFrame({"group": name, "label": y, "pred": pred})


def _frame(c_tpr: float) -> pd.DataFrame:
    return pd.concat(
        [
            _group("A", 400, 120, 0.9, 0.05),
            _group("B", 400, 120, 0.9, 0.05),
            _group("C", 400, 120, c_tpr, 0.05),
            _group("tiny", 10, 3, 0.0, 1.0),  # wildly different, but too small to gate
        ],
        ignore_index=True,
    )


def test_fairness_names_the_disadvantaged_group():
    df = _frame(c_tpr=0.4)
    result = fairness.fairness_report(
        df["label"], df["pred"], df[["group"]], min_group_size=30, max_equalized_odds=0.1
    )
    assert not result.passed
    assert result.offenders == {"group": ["C"]}
    assert "C" in result.message and "tiny" not in result.message
    col = result.columns[0]
    assert col.excluded == ["tiny"]
    assert col.equalized_odds_difference == pytest.approx(0.5)
    assert col.groups.loc["C", "tpr"] == pytest.approx(0.4)
    assert col.groups.loc["tiny", "count"] == 10 and not col.groups.loc["tiny", "gated"]


def test_fairness_passes_an_unbiased_model():
    df = _frame(c_tpr=0.9)
    result = fairness.fairness_report(df["label"], df["pred"], df[["group"]], min_group_size=30)
    assert result.passed, result.message
    col = result.columns[0]
    assert col.demographic_parity_difference == pytest.approx(0.0)
    assert col.equalized_odds_difference == pytest.approx(0.0)
    assert set(col.groups.index) == {"A", "B", "C", "tiny"}  # small groups are still reported
    assert result.as_dict()["columns"][0]["excluded_groups"] == ["tiny"]


def test_a_gap_within_its_sampling_noise_does_not_fail_the_gate():
    """Groups drawn at random from one model's answers are fair by construction, yet with a
    few hundred rows each the gap between the best and worst TPR passes 0.1 by chance: the gate
    judges it beyond its sampling noise (1.96 standard errors of the two rates' difference)."""
    rng = np.random.default_rng(7)
    y = (rng.random(1_000) < 0.3).astype(int)
    pred = np.where(rng.random(1_000) < 0.75, y, 1 - y)  # right 3 times in 4, for everyone
    groups = pd.Series(rng.choice(list("abcd"), 1_000), name="g")
    col = fairness.column_fairness(y, pred, groups, max_equalized_odds=0.1)
    assert col.equalized_odds_difference > 0.15  # what the raw gap says
    assert col.noise["equalized_odds"] > col.equalized_odds_difference - 0.1
    assert col.passed, col.violations
    # the same groups, one of them now missing 40 % of its true positives: caught
    worse = pred.copy()
    hit = np.flatnonzero((groups.to_numpy() == "a") & (y == 1) & (pred == 1))
    worse[rng.choice(hit, int(0.4 * len(hit)), replace=False)] = 0
    col = fairness.column_fairness(y, worse, groups, max_equalized_odds=0.1)
    assert not col.passed and "beyond its sampling noise (± 0." in col.violations[0]
    assert "a" in col.offenders


def test_equalized_odds_is_fairlearns_when_every_rate_is_gated():
    from fairlearn.metrics import equalized_odds_difference

    df = _frame(c_tpr=0.4)
    big = df[df["group"] != "tiny"]
    col = fairness.column_fairness(big["label"], big["pred"], big["group"], min_group_size=30)
    assert col.groups[["gated", "tpr_gated", "fpr_gated"]].all().all()
    assert col.equalized_odds_difference == pytest.approx(
        equalized_odds_difference(big["label"], big["pred"], sensitive_features=big["group"])
    )


def test_a_tpr_over_few_positives_is_reported_not_gated():
    """A large group with a handful of positives: its TPR is noise, its FPR is not."""
    df = pd.concat(
        [
            _group("A", 400, 120, 0.9, 0.05),
            _group("B", 400, 120, 0.9, 0.05),
            _group("rare", 400, 5, 0.2, 0.05),  # 1 of 5 positives caught
        ],
        ignore_index=True,
    )
    kw = dict(max_demographic_parity=None)  # base rates differ: only equalized odds is gated
    result = fairness.fairness_report(
        df["label"], df["pred"], df[["group"]], min_group_size=30, **kw
    )
    assert result.passed, result.message
    col = result.columns[0]
    assert col.groups.loc["rare", "gated"] and not col.groups.loc["rare", "tpr_gated"]
    assert col.groups.loc["rare", "positives"] == 5
    assert col.ungated_rates == {"rare": ["tpr"]}
    assert col.equalized_odds_difference == pytest.approx(0.0, abs=0.01)  # FPRs agree
    assert "rare (TPR)" in result.message.replace("group=", "")
    # with enough positives the same gap fails and names the group
    strict = fairness.fairness_report(
        df["label"], df["pred"], df[["group"]], min_group_size=5, **kw
    )
    assert not strict.passed and strict.offenders == {"group": ["rare"]}


def test_choose_threshold_wraps_the_tuned_value_or_says_why_not(model, data):
    _, val, _ = data
    choice = threshold.choose_threshold(model, val[INPUTS], val["label"], "f1")
    assert choice.tuned and threshold.decision_threshold(choice.model) == choice.threshold
    assert choice.validation_score("tuned") >= choice.validation_score("default")
    off = threshold.choose_threshold(model, val[INPUTS], val["label"], tune=False)
    assert off.model is model and off.threshold == 0.5 and not off.tuned
    empty = threshold.choose_threshold(model, val[INPUTS].iloc[:0], val["label"].iloc[:0])
    assert empty.model is model and "0 rows" in empty.reason
    with pytest.raises(ValueError, match="unknown"):
        threshold.choose_threshold(model, val[INPUTS], val["label"], "auc")


# --- explainability and calibration ----------------------------------------------------------


def test_importance_ranks_an_informative_column_above_noise(model, data):
    _, _, test = data
    table = explain.permutation_importance_table(
        model, test, test["label"], n_repeats=3, seed=0, n_jobs=1
    )
    assert set(table["feature"]) == set(INPUTS)  # original columns, not one-hot ones
    rank = dict(zip(table["feature"], table["rank"], strict=True))
    assert rank["feature_1"] < rank["noise"]
    assert table.loc[table["feature"] == "feature_1", "importance_mean"].item() > 0.05
    assert len(explain.top_k(table, 2)) == 2


def test_calibration(model, data):
    from sklearn.metrics import brier_score_loss

    _, _, test = data
    p = threshold.scores(model, test[INPUTS])
    cal = explain.calibration(test["label"], p, n_bins=10)
    assert cal["brier"] == pytest.approx(brier_score_loss(test["label"], p))
    assert cal["curve"]["count"].sum() == len(test)
    with pytest.raises(ValueError):
        explain.calibration([0, 1], [-1.0, 2.0])


# --- pictures and HTML -----------------------------------------------------------------------


@pytest.mark.integration
def test_figures_png_and_self_contained_html(model, data, tuned):
    _, _, test = data
    t, table = tuned
    y = test["label"]
    s = threshold.scores(model, test[INPUTS])
    cal = explain.calibration(y, s)
    imp = explain.permutation_importance_table(model, test, y, n_repeats=2, seed=0)
    fair = fairness.fairness_report(y, (s >= t).astype(int), test[["category"]])
    marks = {"default": 0.5, "tuned": t}
    figures = {
        "roc": report.roc_figure(y, s, marks),
        "pr": report.pr_figure(y, s, t),
        "confusion": report.confusion_figure(y, s, marks),
        "threshold": report.threshold_figure(table, t),
        "reliability": report.reliability_figure(cal),
        "importance": report.importance_figure(imp, k=3),
        "groups": report.group_figure(fair.columns[0].groups, "category"),
        "comparison": report.comparison_figure({"f1": 0.8}, {"f1": 0.7}),
    }
    images = {name: report.png_bytes(fig) for name, fig in figures.items()}
    for png in images.values():
        assert png.startswith(b"\x89PNG\r\n\x1a\n")

    doc = report.build_html(
        {
            "threshold": {"value": t, "metric": "f1"},
            "metrics": threshold.metrics_at(y, s, marks),
            "fairness": fair.as_dict(),
            "importance": imp,
            "note": "<script>alert(1)</script>",
        },
        images,
    )
    checker = read_page(doc)
    assert checker.open_tags == []
    assert len(checker.images) == len(images)
    assert all(src.startswith("data:image/png;base64,") for src in checker.images)
    assert checker.external == []
    assert "data:image/png;base64," in doc
    assert "<script>" not in doc  # text is escaped


@pytest.mark.integration
def test_a_production_model_that_refuses_the_rows_is_a_named_verdict_a_bug_is_raised(model, data):
    """Production trained on other columns cannot score today's rows: a permanent, named
    failure, so the gate decides on it (and `allow_unscored_production` may open it, saying
    why). A production object that breaks in our own code is a bug: raised, never a verdict."""
    train, _, test = data
    forest = make_estimator("random_forest", {"n_estimators": 5, "max_depth": 3}, seed=0)
    other = build_pipeline(["feature_1", "absent"], [], forest).fit(
        train[["feature_1"]].assign(absent=1.0), train["label"]
    )

    def evaluation(baseline):
        return report.build_evaluation(
            model,
            test[INPUTS],
            test["label"],
            test[["category"]],
            baseline,
            bootstrap_resamples=0,
            importance_repeats=0,
            allow_unscored_production=True,
        )

    opened = evaluation(report.Baseline("3", other))
    gate = opened.report.gate("beats_production")
    assert gate.passed is True
    assert "could not be scored" in gate.description and "absent" in gate.description
    assert "allow_unscored_production is set" in gate.description

    with pytest.raises(AttributeError):  # not "could not be scored": the run fails, loudly
        evaluation(report.Baseline("3", object()))


@pytest.mark.parametrize("allow", [False, True])
@pytest.mark.integration
def test_a_production_model_that_cannot_be_scored_fails_closed(model, data, allow):
    """A load error (a refused MLmodel, an unreachable artifact store) must not open the gate."""
    _, _, test = data
    broken = report.Baseline("3", None, "RegistryError: models:/m/3 declares 'pickle'")
    evaluation = report.build_evaluation(
        model,
        test[INPUTS],
        test["label"],
        test[["category"]],
        broken,
        bootstrap_resamples=0,
        importance_repeats=0,
        allow_unscored_production=allow,
    )
    gate = evaluation.report.gate("beats_production")
    assert gate.passed is allow
    assert "could not be scored" in gate.description and "pickle" in gate.description
    assert evaluation.report.passed is (
        allow and all(g.passed for g in evaluation.report.gates if g.name != "beats_production")
    )
