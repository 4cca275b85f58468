"""The model: one sklearn Pipeline (preprocessing + estimator) and the searches that tune it.

Preprocessing lives inside the Pipeline and is fitted on training rows only; the seed scaled the
whole table before splitting, which leaks test-set statistics into training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlassets.ml.defaults import TRAINING

# The seed's search space (27 configurations, 5 folds, F1): the named strategy `seed_grid`.
SEED_GRID: dict[str, list[Any]] = {
    "n_estimators": [100, 200, 300],
    "max_depth": [10, 20, 30],
    "min_samples_split": [2, 5, 10],
}
# The default strategy `fast`: a histogram gradient-boosting model, its tree depth chosen by
# successive halving over this grid (5 candidates on a third of the rows, the best 2 on all of
# them, stratified folds), the number of boosting iterations by early stopping on a seeded 10 % of
# each fit's rows. Chosen by measurement (benchmarks/RESULTS.md): on the synthetic fraud data at
# 20,000 and 100,000 rows it scores `seed_grid`'s test F1 (tuned threshold) and PR AUC within
# noise (F1 -0.008 to +0.023 over five draws), on a wide churn table far better (F1 +0.18), in
# 2-5 % of its wall time. Shallow trees suit near-additive signals (the fraud rule), deeper ones
# interactions (the churn table); the search tells them apart.
FAST_SPACE: dict[str, list[Any]] = {
    "max_depth": [2, 3, 4, 6, None],
    "learning_rate": [0.1],
    "l2_regularization": [1.0],
    "max_iter": [500],
    "early_stopping": [True],
}
FAST_FACTOR = 3  # successive halving keeps the best third of the candidates at each rung
STRATEGIES = ("fast", "seed_grid", "grid", "random", "halving", "fixed")
# Named strategies that come with their own estimator (TrainingConfig.estimator is ignored).
STRATEGY_ESTIMATORS: dict[str, str] = {
    "seed_grid": "random_forest",
    "fast": "hist_gradient_boosting",
}
ESTIMATORS: dict[str, str] = {
    "random_forest": "sklearn.ensemble.RandomForestClassifier",
    "hist_gradient_boosting": "sklearn.ensemble.HistGradientBoostingClassifier",
    "logistic_regression": "sklearn.linear_model.LogisticRegression",
    "extra_trees": "sklearn.ensemble.ExtraTreesClassifier",
}
# Types inside our Pipelines that skops does not trust by default. Listed explicitly so that
# saving and loading through MLflow's skops format works, and anything else is refused.
SKOPS_TRUSTED_TYPES: list[str] = [
    "mlassets.ml.features.SpecFeatures",
    "numpy.dtype",
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
]


def _estimator_class(name: str) -> type:
    """The sklearn class behind an estimator name (imported on first use)."""
    import importlib

    if name not in ESTIMATORS:
        raise ValueError(f"estimator {name!r} is unknown (known: {sorted(ESTIMATORS)})")
    module, cls = ESTIMATORS[name].rsplit(".", 1)
    return getattr(importlib.import_module(module), cls)


def make_estimator(name: str, params: dict[str, Any] | None = None, seed: int = 42):
    """An unfitted classifier by name, seeded; `params` are its constructor arguments."""
    estimator = _estimator_class(name)()
    if "random_state" in estimator.get_params():
        estimator.set_params(random_state=seed)
    if name in ("random_forest", "extra_trees"):
        estimator.set_params(
            n_jobs=1
        )  # searches parallelise over folds; nested pools oversubscribe
    return estimator.set_params(**(params or {}))


def build_pipeline(
    numeric: list[str],
    categorical: list[str],
    estimator,
    *,
    derived: list[str] | None = None,
    timestamp: str | None = None,
):
    """Derive features, impute and scale numeric ones, impute and one-hot categorical ones, then
    `estimator`.

    The first step (`features.SpecFeatures`) takes raw rows and computes the `derived` features
    from them (named after `spec.features.derived`, anchored on the `timestamp` column), so the
    fitted Pipeline takes what lands. The encoder ignores categories unseen in training, so a new
    category at serving time scores instead of failing.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from mlassets.ml.features import SpecFeatures

    derived = list(derived or [])
    transformers = []
    if numeric or derived:
        num = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
        transformers.append(("numeric", num, [*numeric, *derived]))
    if categorical:
        cat = Pipeline(
            [
                ("impute", SimpleImputer(strategy="most_frequent")),
                ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
            ]
        )
        transformers.append(("categorical", cat, categorical))
    pre = ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=False)
    features = SpecFeatures(list(numeric), list(categorical), derived, timestamp)
    return Pipeline([("features", features), ("preprocess", pre), ("estimator", estimator)])


def spec_pipeline(spec, estimator):
    """`build_pipeline` for a dataset spec: its features, derived ones included."""
    f = spec.features
    return build_pipeline(
        f.numeric, f.categorical, estimator, derived=f.derived, timestamp=spec.timestamp
    )


@dataclass
class SearchResult:
    """What a search found: the refitted best Pipeline and the evidence for choosing it."""

    model: Any
    best_params: dict[str, Any]
    best_score: float | None
    cv_table: pd.DataFrame
    candidates: int
    placement: Any = None  # parallel.Placement: the joblib backend that ran the fits, and where


def _prefixed(grid: dict[str, Any]) -> dict[str, Any]:
    return {k if "__" in k else f"estimator__{k}": v for k, v in grid.items()}


def _first_rung(y, cv: int, rungs: int, factor: int = 3) -> int:
    """Rows of the first rung: the last of `rungs` rungs sees every row, and every fold of the
    first still holds about 10 positives to score F1 on."""
    n = len(y)
    rate = max(float(np.mean(y)), 1e-6)
    return int(min(n, max(n // factor ** (rungs - 1), np.ceil(10 * cv / rate))))


def estimator_for(strategy: str, estimator: str) -> str:
    """The estimator a strategy trains: its own for `fast` and `seed_grid`, else `estimator`."""
    return STRATEGY_ESTIMATORS.get(strategy, estimator)


# Estimators whose every fit already uses all cores (OpenMP threads): a search over them gains
# little from parallel fits and pays a copy of the rows per worker. At 1,000,000 fraud rows the
# default `fast` search took 177 s with two loky workers and 206 s with one process (same best
# parameters and CV score), and the whole training_job peaked at 1.36 against 0.82 GiB PSS.
SELF_PARALLEL_ESTIMATORS = frozenset({"hist_gradient_boosting"})


def search_jobs(estimator: str, n_jobs: int | None, parallel_backend: str = "loky") -> int:
    """The search's parallel fits: `n_jobs` if given; else every worker of a dask or ray cluster,
    one process for an estimator that parallelises each fit itself, every core otherwise."""
    if n_jobs is not None:
        return n_jobs
    if parallel_backend != "loky":
        return -1
    return 1 if estimator in SELF_PARALLEL_ESTIMATORS else -1


def _with_estimator(pipeline, name: str, seed: int):
    """`pipeline` with a seeded `name` estimator, unless it already holds one of that kind.

    Keeps an estimator of the right kind as it is (with the caller's fixed parameters).
    """
    if isinstance(pipeline.named_steps["estimator"], _estimator_class(name)):
        return pipeline
    return pipeline.set_params(estimator=make_estimator(name, seed=seed))


def tune(
    pipeline,
    X: pd.DataFrame,
    y: pd.Series,
    *,
    strategy: str = "fast",
    param_grid: dict[str, list[Any]] | None = None,
    n_iter: int = 20,
    cv: int = 5,
    scoring: str = "f1",
    seed: int = 42,
    n_jobs: int = 1,
    progress=None,
    parallel_backend: str = TRAINING.parallel_backend,
    scheduler_address: str | None = TRAINING.scheduler_address,
) -> SearchResult:
    """Tune `pipeline` on (X, y) with a named strategy and return the refitted best Pipeline.

    `fast` (the default) is successive halving of a histogram gradient-boosting model over the
    grid `FAST_SPACE`; `seed_grid` is the seed's GridSearchCV. Both bring their own
    estimator (`STRATEGY_ESTIMATORS`): the pipeline's is replaced unless it is already of that
    kind. `grid`, `random` (n_iter samples) and `halving` (successive halving over n_iter
    samples) search `param_grid`; `fixed` fits once, no search. Grid keys may omit the
    `estimator__` prefix. Folds are stratified and seeded. The fits run on `parallel_backend`
    (`mlassets.ml.parallel.search_backend`: loky, dask or ray at `scheduler_address`); the result
    says where they ran, and no loky worker outlives the call.
    """
    from sklearn.model_selection import ParameterGrid, StratifiedKFold

    if strategy not in STRATEGIES:
        raise ValueError(f"strategy {strategy!r} is unknown (known: {list(STRATEGIES)})")
    if strategy == "fixed":
        model = pipeline.fit(X, y)
        params = {k: v for k, v in model.named_steps["estimator"].get_params().items()}
        return SearchResult(model, params, None, pd.DataFrame(), 1)
    if strategy in STRATEGY_ESTIMATORS:
        pipeline = _with_estimator(pipeline, STRATEGY_ESTIMATORS[strategy], seed)
    named = {"seed_grid": SEED_GRID, "fast": FAST_SPACE}
    grid = _prefixed(named.get(strategy, param_grid or {}))
    if not grid:
        raise ValueError(f"strategy {strategy!r} needs a non-empty param_grid")
    folds = StratifiedKFold(n_splits=cv, shuffle=True, random_state=seed)
    from mlassets.ml import search as classes

    common = dict(scoring=scoring, cv=folds, n_jobs=n_jobs, refit=True, error_score="raise")
    if strategy in ("seed_grid", "grid"):
        search = classes.Grid(pipeline, grid, **common)
    elif strategy == "random":
        search = classes.Random(pipeline, grid, n_iter=n_iter, random_state=seed, **common)
    elif strategy == "fast":
        search = classes.HalvingGrid(
            pipeline,
            grid,
            factor=FAST_FACTOR,
            min_resources=_first_rung(
                y, cv, classes.rungs(len(ParameterGrid(grid)), FAST_FACTOR), FAST_FACTOR
            ),
            random_state=seed,  # the rows of each rung's sample
            **common,
        )
    else:
        search = classes.Halving(
            pipeline,
            grid,
            n_candidates=n_iter,
            factor=3,
            min_resources=_first_rung(y, cv, 3),
            random_state=seed,
            **common,
        )
    from mlassets.ml.parallel import search_backend

    with (
        classes.reporting(progress),
        search_backend(parallel_backend, scheduler_address, n_jobs) as placement,
    ):
        search.fit(X, y)
    table = pd.DataFrame(search.cv_results_)
    keep = [c for c in table if c.startswith("param_")]
    keep += ["mean_test_score", "std_test_score", "rank_test_score", "mean_fit_time"]
    keep += [c for c in ("iter", "n_resources") if c in table]
    table = table[keep].rename(columns=lambda c: c.removeprefix("param_estimator__"))
    table = table.sort_values("rank_test_score", kind="stable").reset_index(drop=True)
    best = {k.removeprefix("estimator__"): v for k, v in search.best_params_.items()}
    return SearchResult(
        search.best_estimator_,
        best,
        float(search.best_score_),
        table,
        len(search.cv_results_["params"]),
        placement,
    )


def train_candidate(
    X: pd.DataFrame,
    y: pd.Series,
    spec,
    *,
    strategy: str = TRAINING.strategy,
    estimator: str = TRAINING.estimator,
    params: dict[str, Any] | None = None,
    param_grid: dict[str, list[Any]] | None = None,
    n_iter: int = TRAINING.n_iter,
    cv_folds: int = TRAINING.cv_folds,
    scoring: str = TRAINING.scoring,
    seed: int = TRAINING.seed,
    n_jobs: int | None = TRAINING.n_jobs,
    progress=None,
    parallel_backend: str = TRAINING.parallel_backend,
    scheduler_address: str | None = TRAINING.scheduler_address,
) -> SearchResult:
    """The spec's Pipeline (`spec_pipeline`: raw rows in) of the strategy's estimator
    (`estimator_for`) with fixed `params`, tuned.

    What `candidate_model` does before its threshold, in one call that the benchmarks share;
    the keyword names are TrainingConfig's (`TrainingConfig.search_settings()`); `n_jobs` None
    lets `search_jobs` choose.
    """
    name = estimator_for(strategy, estimator)
    pipeline = spec_pipeline(spec, make_estimator(name, params, seed=seed))
    return tune(
        pipeline,
        X,
        y,
        strategy=strategy,
        param_grid=param_grid,
        n_iter=n_iter,
        cv=cv_folds,
        scoring=scoring,
        seed=seed,
        n_jobs=search_jobs(name, n_jobs, parallel_backend),
        progress=progress,
        parallel_backend=parallel_backend,
        scheduler_address=scheduler_address,
    )


def untrusted_types(model) -> list[str]:
    """Types in `model` that skops would refuse to load even with our trusted list."""
    import skops.io

    found = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    return sorted(set(found) - set(SKOPS_TRUSTED_TYPES))
