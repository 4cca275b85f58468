"""The Pipeline, the estimators by name, the search strategies and skops-safe types."""

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import ParameterGrid

from mlassets.ml.data import target
from mlassets.ml.features import input_frame
from mlassets.ml.splitting import split
from mlassets.ml.training import (
    ESTIMATORS,
    FAST_SPACE,
    SEED_GRID,
    STRATEGIES,
    SearchResult,
    build_pipeline,
    estimator_for,
    make_estimator,
    spec_pipeline,
    tune,
    untrusted_types,
)

pytestmark = pytest.mark.unit

SMALL_FOREST = {"n_estimators": 8, "max_depth": 6}


@pytest.fixture
def Xy(featured, spec):
    return input_frame(featured, spec), target(featured, spec)


def pipeline(spec, name="random_forest", params=None, seed=0):
    estimator = make_estimator(name, SMALL_FOREST if params is None else params, seed=seed)
    return spec_pipeline(spec, estimator)


# -- make_estimator ------------------------------------------------------------------------------


def test_make_estimator_by_name_is_seeded_and_takes_params():
    forest = make_estimator("random_forest", {"n_estimators": 7}, seed=5)
    assert type(forest).__name__ == "RandomForestClassifier"
    assert forest.get_params()["random_state"] == 5
    assert forest.get_params()["n_estimators"] == 7
    assert forest.get_params()["n_jobs"] == 1
    hgb = make_estimator("hist_gradient_boosting", seed=9)
    assert type(hgb).__name__ == "HistGradientBoostingClassifier"
    assert hgb.get_params()["random_state"] == 9


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_every_named_estimator_can_be_made(name):
    estimator = make_estimator(name, seed=1)
    assert type(estimator).__name__ == ESTIMATORS[name].rsplit(".", 1)[1]


def test_an_unknown_estimator_raises():
    with pytest.raises(ValueError, match="'xgboost' is unknown"):
        make_estimator("xgboost")


def test_a_bad_estimator_param_raises():
    with pytest.raises(ValueError, match="n_trees"):
        make_estimator("random_forest", {"n_trees": 3})


# -- build_pipeline ------------------------------------------------------------------------------


def test_pipeline_fits_and_predicts(Xy, spec):
    X, y = Xy
    model = pipeline(spec).fit(X, y)
    pred = model.predict(X)
    proba = model.predict_proba(X)
    assert pred.shape == (len(X),) and set(np.unique(pred)) <= {0, 1}
    assert proba.shape == (len(X), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert (pred == y.to_numpy()).mean() > 0.9  # the synthetic signal is learnable
    names = list(model.named_steps["preprocess"].get_feature_names_out())
    assert names[:5] == spec.numeric_inputs
    assert names[5:] == [f"category_{c}" for c in ["electronics", "fashion", "grocery", "travel"]]


def test_pipeline_is_deterministic_for_a_seed(Xy, spec):
    X, y = Xy
    a = pipeline(spec, seed=3).fit(X, y).predict_proba(X)
    b = pipeline(spec, seed=3).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(a, b)


def test_an_unseen_category_at_predict_time_scores_instead_of_failing(Xy, spec):
    X, y = Xy
    model = pipeline(spec).fit(X, y)
    new = X.head(20).copy()
    new["category"] = "crypto"
    pred = model.predict(new)
    assert pred.shape == (20,)
    encoded = model[:-1].transform(new)  # features, then preprocessing
    assert (encoded[:, len(spec.numeric_inputs) :] == 0).all()


def test_missing_values_are_imputed(Xy, spec):
    X, y = Xy
    model = pipeline(spec).fit(X, y)
    holes = X.head(10).copy()
    holes.loc[holes.index[:5], "feature_1"] = np.nan
    holes.loc[holes.index[5:], "category"] = np.nan
    assert model.predict(holes).shape == (10,)
    assert np.isfinite(model[:-1].transform(holes)).all()


def test_preprocessing_is_fitted_on_training_rows_only(featured, spec):
    y = target(featured, spec)
    parts = split(featured, y, seed=1)
    X_train, y_train = input_frame(parts.train, spec), target(parts.train, spec)
    for model in (
        pipeline(spec).fit(X_train, y_train),
        tune(pipeline(spec), X_train, y_train, strategy="fixed").model,
    ):
        pre = model.named_steps["preprocess"].named_transformers_["numeric"]
        scale = pre.named_steps["scale"]
        train, every = parts.train[spec.numeric_inputs], featured[spec.numeric_inputs]
        np.testing.assert_allclose(scale.mean_, train.mean())
        assert not np.allclose(scale.mean_, every.mean())
        impute = pre.named_steps["impute"]
        np.testing.assert_allclose(impute.statistics_, train.median())


def test_a_pipeline_with_only_numeric_or_only_categorical_features(Xy):
    X, y = Xy
    numeric = build_pipeline(["feature_1"], [], make_estimator("logistic_regression")).fit(X, y)
    assert numeric.predict(X).shape == (len(X),)
    assert list(numeric.named_steps["preprocess"].get_feature_names_out()) == ["feature_1"]
    categorical = build_pipeline([], ["category"], make_estimator("logistic_regression"))
    assert categorical.fit(X, y).predict(X).shape == (len(X),)


# -- tune ----------------------------------------------------------------------------------------


def test_tune_grid_returns_the_refitted_best_model_a_cv_table_and_progress(Xy, spec):
    X, y = Xy
    calls = []
    result = tune(
        pipeline(spec),
        X,
        y,
        strategy="grid",
        param_grid={"n_estimators": [4, 8], "max_depth": [3, 8]},
        cv=3,
        n_jobs=1,
        progress=lambda done, total, best: calls.append((done, total, best)),
    )
    assert isinstance(result, SearchResult)
    assert result.candidates == 4
    assert result.model.predict(X).shape == (len(X),)
    assert set(result.best_params) == {"n_estimators", "max_depth"}
    estimator = result.model.named_steps["estimator"]
    assert estimator.n_estimators == result.best_params["n_estimators"]
    assert estimator.max_depth == result.best_params["max_depth"]
    table = result.cv_table
    assert len(table) == 4
    assert {"n_estimators", "max_depth", "mean_test_score", "rank_test_score"} <= set(table)
    assert table["rank_test_score"].is_monotonic_increasing
    assert result.best_score == pytest.approx(table["mean_test_score"].iloc[0])
    assert table.loc[0, "n_estimators"] == result.best_params["n_estimators"]
    # progress: one call per candidate with n_jobs=1, done counting up to total
    assert [c[:2] for c in calls] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    bests = [c[2] for c in calls]
    assert bests == sorted(bests) and bests[-1] == pytest.approx(result.best_score)


@pytest.mark.integration
def test_tune_grid_in_two_processes_reports_progress_in_batches(Xy, spec):
    X, y = Xy
    calls = []
    result = tune(
        pipeline(spec),
        X,
        y,
        strategy="grid",
        param_grid={"max_depth": [2, 4, 6]},
        cv=3,
        n_jobs=2,
        progress=lambda *c: calls.append(c),
    )
    assert [c[:2] for c in calls] == [(2, 3), (3, 3)]
    assert result.candidates == 3 and len(result.cv_table) == 3


def test_tune_is_reproducible_for_a_seed(Xy, spec):
    X, y = Xy

    def run():
        return tune(
            pipeline(spec),
            X,
            y,
            strategy="random",
            param_grid={"max_depth": [2, 3, 4, 6, 8]},
            n_iter=2,
            cv=3,
            seed=4,
        )

    a, b = run(), run()
    assert a.best_params == b.best_params
    pd.testing.assert_frame_equal(
        a.cv_table.drop(columns="mean_fit_time"), b.cv_table.drop(columns="mean_fit_time")
    )
    np.testing.assert_array_equal(a.model.predict_proba(X), b.model.predict_proba(X))


def test_tune_random_samples_n_iter_candidates(Xy, spec):
    X, y = Xy
    calls = []
    result = tune(
        pipeline(spec),
        X,
        y,
        strategy="random",
        param_grid={"max_depth": [2, 3, 4, 6, 8, 10]},
        n_iter=3,
        cv=3,
        progress=lambda *c: calls.append(c),
    )
    assert result.candidates == 3 and len(result.cv_table) == 3
    assert result.cv_table["max_depth"].nunique() == 3
    assert result.best_params["max_depth"] in {2, 3, 4, 6, 8, 10}
    assert calls[-1][:2] == (3, 3)
    assert result.model.predict(X).shape == (len(X),)


def test_tune_accepts_prefixed_grid_keys(Xy, spec):
    X, y = Xy
    result = tune(
        pipeline(spec),
        X,
        y,
        strategy="grid",
        param_grid={"estimator__max_depth": [3], "preprocess__numeric__impute__strategy": ["mean"]},
        cv=3,
    )
    assert result.best_params == {
        "max_depth": 3,
        "preprocess__numeric__impute__strategy": "mean",
    }
    impute = result.model.named_steps["preprocess"].named_transformers_["numeric"]["impute"]
    assert impute.strategy == "mean"


def test_tune_halving_runs_rungs_and_reports_progress(spec):
    from mlassets.ml.features import build_features
    from mlassets.synthetic import fraud_frame

    df = build_features(fraud_frame(3000, seed=7), spec)
    X, y = input_frame(df, spec), target(df, spec)
    calls = []
    result = tune(
        pipeline(spec, params={"n_estimators": 5}),
        X,
        y,
        strategy="halving",
        param_grid={"max_depth": [2, 4, 6, 8, 10, 12]},
        n_iter=4,
        cv=3,
        progress=lambda *c: calls.append(c),
    )
    table = result.cv_table
    assert {"iter", "n_resources"} <= set(table)
    assert sorted(table["iter"].unique()) == [0, 1]
    assert (table.groupby("iter").size() == [4, 2]).all()
    assert table["n_resources"].max() <= len(X)
    assert result.candidates == len(table) == 6
    assert result.model.predict(X).shape == (len(X),)
    assert [c[:2] for c in calls] == [(4, 6), (6, 6)]
    assert all(done <= total for done, total, _ in calls)


@pytest.mark.integration
def test_tune_fast_halves_a_boosting_grid_and_its_last_rung_sees_every_row(spec):
    from mlassets.ml.features import build_features
    from mlassets.synthetic import fraud_frame

    df = build_features(fraud_frame(3000, seed=7), spec)
    X, y = input_frame(df, spec), target(df, spec)
    calls = []
    # the pipeline holds a forest (TrainingConfig's default estimator): fast brings its own
    result = tune(pipeline(spec), X, y, strategy="fast", cv=3, progress=lambda *c: calls.append(c))
    estimator = result.model.named_steps["estimator"]
    assert type(estimator).__name__ == "HistGradientBoostingClassifier"
    assert estimator.random_state == 42 and estimator.early_stopping is True
    table = result.cv_table
    candidates = len(ParameterGrid(FAST_SPACE))
    assert (table.groupby("iter").size() == [candidates, -(-candidates // 3)]).all()
    assert table["n_resources"].max() == len(X)
    assert result.best_params["max_depth"] in FAST_SPACE["max_depth"]
    assert set(result.best_params) == set(FAST_SPACE)
    assert [c[:2] for c in calls] == [(candidates, len(table)), (len(table), len(table))]
    assert untrusted_types(result.model) == []


@pytest.mark.integration
def test_tune_fast_keeps_a_boosting_estimator_it_is_given(Xy, spec):
    X, y = Xy
    given = pipeline(spec, "hist_gradient_boosting", {"max_bins": 63}, seed=3)
    result = tune(given, X, y, strategy="fast", cv=3)
    estimator = result.model.named_steps["estimator"]
    assert estimator.max_bins == 63 and estimator.random_state == 3


@pytest.mark.integration
def test_tune_fast_is_reproducible(Xy, spec):
    X, y = Xy
    a = tune(pipeline(spec), X, y, strategy="fast", cv=3, seed=5)
    b = tune(pipeline(spec), X, y, strategy="fast", cv=3, seed=5)
    assert a.best_params == b.best_params
    np.testing.assert_array_equal(a.model.predict_proba(X), b.model.predict_proba(X))


def test_named_strategies_bring_their_estimator():
    assert estimator_for("fast", "random_forest") == "hist_gradient_boosting"
    assert estimator_for("seed_grid", "logistic_regression") == "random_forest"
    assert estimator_for("grid", "extra_trees") == "extra_trees"


def test_tune_fixed_fits_once_without_a_search(Xy, spec):
    X, y = Xy
    calls = []
    result = tune(pipeline(spec), X, y, strategy="fixed", progress=lambda *c: calls.append(c))
    assert result.candidates == 1
    assert result.best_score is None
    assert result.cv_table.empty
    assert result.best_params["n_estimators"] == SMALL_FOREST["n_estimators"]
    assert result.model.predict(X).shape == (len(X),)
    assert calls == []


def test_seed_grid_is_the_seeds_27_configurations():
    assert SEED_GRID == {
        "n_estimators": [100, 200, 300],
        "max_depth": [10, 20, 30],
        "min_samples_split": [2, 5, 10],
    }
    assert len(ParameterGrid(SEED_GRID)) == 27
    assert set(STRATEGIES) == {"fast", "seed_grid", "grid", "random", "halving", "fixed"}


def test_an_unknown_strategy_raises(Xy, spec):
    X, y = Xy
    with pytest.raises(ValueError, match="'bayes' is unknown"):
        tune(pipeline(spec), X, y, strategy="bayes")


@pytest.mark.parametrize("strategy", ["grid", "random", "halving"])
def test_a_search_without_a_grid_raises(Xy, spec, strategy):
    X, y = Xy
    with pytest.raises(ValueError, match="non-empty param_grid"):
        tune(pipeline(spec), X, y, strategy=strategy, param_grid={})


# -- skops ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("random_forest", SMALL_FOREST),
        ("hist_gradient_boosting", {"max_iter": 10}),
        ("logistic_regression", {}),
    ],
)
def test_fitted_pipelines_hold_only_trusted_types(Xy, spec, name, params):
    X, y = Xy
    model = pipeline(spec, name, params).fit(X, y)
    assert untrusted_types(model) == []


def test_untrusted_types_reports_a_type_outside_the_trusted_list(Xy):
    import operator

    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    X, y = Xy
    odd = Pipeline(
        [("negate", FunctionTransformer(operator.neg)), ("estimator", LogisticRegression())]
    ).fit(X[["feature_1"]], y)
    assert untrusted_types(odd) == ["_operator.neg"]


def test_train_candidate_builds_the_strategys_estimator_with_the_configs_settings(Xy, spec):
    import inspect

    from mlassets.config import TrainingConfig
    from mlassets.ml.training import train_candidate

    X, y = Xy
    settings = TrainingConfig(
        strategy="grid",
        estimator="logistic_regression",
        params={"max_iter": 300},
        param_grid={"C": [0.5, 1.0]},
        cv_folds=3,
        n_jobs=1,
    ).search_settings()
    # every setting is one of train_candidate's keywords, and nothing the threshold needs leaks in
    assert set(settings) <= set(inspect.signature(train_candidate).parameters)
    result = train_candidate(X, y, spec, **settings)
    estimator = result.model.named_steps["estimator"]
    assert type(estimator).__name__ == "LogisticRegression" and estimator.max_iter == 300
    assert result.candidates == 2 and result.best_params["C"] in (0.5, 1.0)
