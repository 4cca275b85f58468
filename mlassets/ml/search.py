"""sklearn searches that report progress after each batch of candidates they evaluate.

Separate from `training` because it imports sklearn at module level: joblib pickles these classes
by reference, which only works for module-level classes. The progress callback is held in a
context variable, not on the search, since the search travels to worker processes and a callback
closing over a Dagster context cannot be pickled.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from math import ceil, floor, log

import numpy as np
from joblib import effective_n_jobs
from sklearn.experimental import enable_halving_search_cv  # noqa: F401
from sklearn.model_selection import (
    GridSearchCV,
    HalvingGridSearchCV,
    HalvingRandomSearchCV,
    ParameterGrid,
    ParameterSampler,
    RandomizedSearchCV,
)

ProgressFn = Callable[[int, int, float], None]
_progress: ContextVar[ProgressFn | None] = ContextVar("mlassets_search_progress", default=None)


@contextlib.contextmanager
def reporting(progress: ProgressFn | None) -> Iterator[None]:
    """Within the block, searches call `progress(done, total, best_score)` after each batch."""
    token = _progress.set(progress)
    try:
        yield
    finally:
        _progress.reset(token)


class _Progress:
    def _report(self, results: dict, total: int) -> None:
        progress = _progress.get()
        if progress is not None:
            scores = np.asarray(results["mean_test_score"], dtype=float)
            best = float(np.nanmax(scores)) if np.isfinite(scores).any() else float("nan")
            progress(len(scores), total, best)

    def _in_batches(self, candidates: list, evaluate) -> None:
        # batches of n_jobs candidates keep every worker busy and still report often
        step = max(1, effective_n_jobs(self.n_jobs))
        for i in range(0, len(candidates), step):
            self._report(evaluate(candidates[i : i + step]), len(candidates))


class Grid(_Progress, GridSearchCV):
    """GridSearchCV, reporting progress."""

    def _run_search(self, evaluate_candidates):
        self._in_batches(list(ParameterGrid(self.param_grid)), evaluate_candidates)


class Random(_Progress, RandomizedSearchCV):
    """RandomizedSearchCV, reporting progress."""

    def _run_search(self, evaluate_candidates):
        sampler = ParameterSampler(
            self.param_distributions, self.n_iter, random_state=self.random_state
        )
        self._in_batches(list(sampler), evaluate_candidates)


def rungs(count: int, factor: int) -> int:
    """Rungs successive halving plans for `count` candidates (or resources), computed exactly as
    sklearn does (1 + floor of a float log) so that our plans match its own."""
    return 1 + floor(log(count, factor))


class _HalvingProgress(_Progress):
    def _run_search(self, evaluate_candidates, *, callback_ctx=None):
        total = self._planned_evaluations()

        def evaluate(*args, **kwargs):
            results = evaluate_candidates(*args, **kwargs)
            self._report(results, total)
            return results

        super()._run_search(evaluate, callback_ctx=callback_ctx)

    def _n_candidates(self) -> int:
        raise NotImplementedError

    def _planned_evaluations(self) -> int:
        """Candidate evaluations over all rungs, as sklearn plans them (0 if not known up front).

        Progress counts every evaluation (`cv_results_` has a row per candidate per rung), so the
        total must too; `n_candidates` alone would let `done` run past `total` after rung one.
        """
        n = self._n_candidates()
        if n == 0:
            return 0
        required = rungs(n, self.factor)
        min_resources = self.min_resources_
        if self.min_resources == "exhaust":
            min_resources = max(min_resources, self.max_resources_ // self.factor ** (required - 1))
        possible = rungs(self.max_resources_ // min_resources, self.factor)
        planned = required if self.aggressive_elimination else min(possible, required)
        total = 0
        for _ in range(planned):
            total += n
            n = ceil(n / self.factor)
        return total


class Halving(_HalvingProgress, HalvingRandomSearchCV):
    """HalvingRandomSearchCV, reporting progress after each rung."""

    def _n_candidates(self) -> int:
        if not isinstance(self.n_candidates, int):
            return 0
        return len(ParameterSampler(self.param_distributions, self.n_candidates))


class HalvingGrid(_HalvingProgress, HalvingGridSearchCV):
    """HalvingGridSearchCV, reporting progress after each rung."""

    def _n_candidates(self) -> int:
        return len(ParameterGrid(self.param_grid))
