"""The progress-reporting sklearn searches used by `tune`."""

import pickle

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.model_selection import StratifiedKFold
from sklearn.tree import DecisionTreeClassifier

from mlassets.ml import search

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def data():
    return make_classification(n_samples=600, n_features=6, weights=[0.7], random_state=0)


def folds():
    return StratifiedKFold(3, shuffle=True, random_state=0)


def test_progress_is_reported_only_inside_the_reporting_block(data):
    X, y = data
    calls = []
    grid = {"max_depth": [1, 2, 3]}
    with search.reporting(lambda *c: calls.append(c)):
        search.Grid(DecisionTreeClassifier(random_state=0), grid, cv=folds()).fit(X, y)
    assert [c[:2] for c in calls] == [(1, 3), (2, 3), (3, 3)]
    assert all(np.isfinite(c[2]) for c in calls)
    search.Grid(DecisionTreeClassifier(random_state=0), grid, cv=folds()).fit(X, y)
    assert len(calls) == 3  # nothing reported once the block has ended


def test_reporting_restores_the_outer_callback():
    outer, inner = [], []
    with search.reporting(outer.append):
        with search.reporting(inner.append):
            assert search._progress.get() == inner.append
        assert search._progress.get() == outer.append
    assert search._progress.get() is None


def test_the_searches_pickle_by_reference():
    grid = search.Grid(DecisionTreeClassifier(), {"max_depth": [1, 2]})
    clone = pickle.loads(pickle.dumps(grid))
    assert type(clone) is search.Grid and clone.param_grid == {"max_depth": [1, 2]}


def test_random_search_reports_its_samples(data):
    X, y = data
    calls = []
    with search.reporting(lambda *c: calls.append(c)):
        s = search.Random(
            DecisionTreeClassifier(random_state=0),
            {"max_depth": list(range(1, 10))},
            n_iter=4,
            cv=folds(),
            random_state=1,
        ).fit(X, y)
    assert [c[:2] for c in calls] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert len(s.cv_results_["params"]) == 4


@pytest.mark.parametrize(
    ("n_candidates", "factor", "min_resources", "aggressive"),
    [
        (4, 3, 60, False),
        (9, 3, 60, False),
        (9, 2, 100, False),
        (9, 3, 300, False),  # fewer rungs possible than required
        (9, 3, 300, True),  # aggressive elimination repeats the first budget
        (12, 3, "exhaust", False),
        pytest.param(
            50,  # more candidates asked than the grid has
            3,
            60,
            False,
            marks=pytest.mark.filterwarnings("ignore:The total space of parameters"),
        ),
    ],
)
def test_halving_progress_ends_at_its_total(data, n_candidates, factor, min_resources, aggressive):
    X, y = data
    calls = []
    with search.reporting(lambda *c: calls.append(c)):
        s = search.Halving(
            DecisionTreeClassifier(random_state=0),
            {"max_depth": list(range(1, 20)), "min_samples_leaf": [1, 5]},
            n_candidates=n_candidates,
            factor=factor,
            min_resources=min_resources,
            aggressive_elimination=aggressive,
            cv=folds(),
            random_state=0,
        ).fit(X, y)
    evaluations = len(s.cv_results_["params"])
    assert len(calls) == s.n_iterations_
    assert calls[-1][:2] == (evaluations, evaluations)
    assert all(done <= total for done, total, _ in calls)
