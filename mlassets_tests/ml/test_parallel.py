"""Where the search's fits run (`mlassets.ml.parallel`): loky leaves no worker behind, a daemonic
process keeps its parallelism on threads, and a real Dask cluster runs the fits in its workers."""

import multiprocessing
import os
import sys
import threading
import time
import warnings
from pathlib import Path

import pandas as pd
import psutil
import pytest

from mlassets.ml.data import target
from mlassets.ml.features import input_frame
from mlassets.ml.parallel import SearchBackendError, search_backend
from mlassets.ml.training import train_candidate
from mlassets_tests.services import HOST, free_port, running, wait_port

pytestmark = pytest.mark.integration

GRID = {"n_estimators": [10, 20], "max_depth": [4, 8]}  # 4 candidates x 3 folds = 12 fits
DASK = str(Path(sys.executable).parent / "dask")


def search(spec, featured, **kwargs):
    X, y = input_frame(featured, spec), target(featured, spec)
    return train_candidate(
        X,
        y,
        spec,
        strategy="grid",
        param_grid=GRID,
        cv_folds=3,
        **{"n_jobs": 2, **kwargs},
    )


def loky_workers(pid: int | None = None) -> list[int]:
    """Live loky worker processes below `pid` (default: this process)."""
    found = []
    for child in psutil.Process(pid or os.getpid()).children(recursive=True):
        try:
            if "popen_loky_posix" in " ".join(child.cmdline()) and child.status() != "zombie":
                found.append(child.pid)
        except psutil.NoSuchProcess:
            pass
    return found


# -- loky ----------------------------------------------------------------------------------------


def test_loky_search_runs_in_worker_processes_and_ends_them(spec, featured):
    seen: list[int] = []

    def progress(done, total, best):  # runs between batches, while the executor is up
        seen.append(len(loky_workers()))

    result = search(spec, featured, progress=progress)
    assert result.placement.backend == "loky" and result.placement.n_jobs == 2
    assert max(seen) >= 1, "the fits did not run in loky workers"
    # shut down when the search returned: none idles for loky's 300 s timeout
    assert loky_workers() == []
    assert "loky with 2 processes" in result.placement.summary()


def _search_in_daemon(queue) -> None:
    """Run the search inside a daemonic process and report what joblib did there."""
    import joblib

    import mlassets.settings  # noqa: F401
    from mlassets.ml.features import build_features
    from mlassets.spec import DEFAULT_SPEC, load_spec
    from mlassets.synthetic import fraud_frame

    spec = load_spec(DEFAULT_SPEC)
    featured = build_features(fraud_frame(2000, seed=7), spec)
    threads: set[int] = set()

    def f1(estimator, X, y):  # records which thread scored each fold
        from sklearn.metrics import f1_score

        threads.add(threading.get_ident())
        return f1_score(y, estimator.predict(X))

    # the trap: plain joblib in a daemonic process gives up parallelism (with a warning)
    with warnings.catch_warnings(), joblib.parallel_config(backend="loky"):
        warnings.simplefilter("ignore")
        plain = joblib.effective_n_jobs(2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = search(spec, featured, scoring=f1)
    queue.put(
        {
            "daemon": multiprocessing.current_process().daemon,
            "plain_loky_jobs": plain,
            "backend": result.placement.backend,
            "n_jobs": result.placement.n_jobs,
            "threads": len(threads),
            "loky_workers": loky_workers(),
            "fallback_warnings": [str(w.message) for w in caught if "n_jobs=1" in str(w.message)],
            "best": result.best_params,
        }
    )


def test_daemonic_process_keeps_its_parallelism_on_threads():
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_search_in_daemon, args=(queue,), daemon=True)
    proc.start()
    try:
        report = queue.get(timeout=300)
    finally:
        proc.join(timeout=60)
        if proc.is_alive():
            proc.kill()
    assert report["daemon"] is True
    assert report["plain_loky_jobs"] == 1  # what joblib alone would have done
    assert report["backend"] == "threading" and report["n_jobs"] == 2
    assert report["threads"] == 2, "the folds were not scored on two threads"
    assert report["fallback_warnings"] == [] and report["loky_workers"] == []


def test_backend_settings_have_one_default_and_reach_the_search():
    from mlassets.config import TrainingConfig
    from mlassets.ml.defaults import TRAINING

    settings = TrainingConfig().search_settings()
    assert settings["parallel_backend"] == TRAINING.parallel_backend == "loky"
    assert settings["scheduler_address"] is TRAINING.scheduler_address is None
    assert TRAINING.search_settings()["parallel_backend"] == "loky"


# -- errors --------------------------------------------------------------------------------------


def test_unknown_backend_and_missing_address_are_named():
    with (
        pytest.raises(SearchBackendError, match="parallel_backend 'spark' is unknown"),
        search_backend("spark"),
    ):
        pass
    with (
        pytest.raises(SearchBackendError, match="needs scheduler_address"),
        search_backend("dask", None),
    ):
        pass


def test_unreachable_scheduler_fails_within_its_timeout():
    address = f"tcp://{HOST}:{free_port()}"  # nothing listens there
    started = time.monotonic()
    with (
        pytest.raises(SearchBackendError, match=f"scheduler_address '{address}'"),
        search_backend("dask", address, timeout=2),
    ):
        pass
    assert time.monotonic() - started < 30  # bounded: a wrong address never hangs a step


def test_ray_without_ray_names_the_extra():
    try:
        import ray  # noqa: F401
    except ImportError:
        with (
            pytest.raises(SearchBackendError, match=r"pip install '\.\[ray\]'"),
            search_backend("ray", None),
        ):
            pass
    else:
        pytest.skip("ray is installed: this test covers its absence")


# -- dask ----------------------------------------------------------------------------------------


@pytest.fixture
def dask_cluster(tmp_path):
    """A real scheduler and two single-threaded workers, each its own process on 127.0.0.1."""
    port = free_port()
    address = f"tcp://{HOST}:{port}"
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    scheduler_cmd = [DASK, "scheduler", "--host", HOST, "--port", str(port), "--no-dashboard"]
    worker = [DASK, "worker", address, "--host", HOST, "--nthreads", "1", "--nworkers", "1"]
    worker += ["--no-dashboard"]
    with running(scheduler_cmd, tmp_path / "scheduler.log", env=env) as scheduler:
        wait_port(scheduler, port, tmp_path / "scheduler.log")
        with (
            running([*worker, "--name", "w1"], tmp_path / "w1.log", env=env) as w1,
            running([*worker, "--name", "w2"], tmp_path / "w2.log", env=env) as w2,
        ):
            from distributed import Client

            with Client(address, timeout=30, set_as_default=False) as client:
                client.wait_for_workers(2, timeout=120)
                workers = client.run(os.getpid)
            yield address, workers, {w1.pid, w2.pid}


def _descendants(pids: set[int]) -> set[int]:
    found = set()
    for pid in pids:
        found |= {c.pid for c in psutil.Process(pid).children(recursive=True)}
    return found


@pytest.mark.services
@pytest.mark.e2e
def test_dask_backend_runs_the_fits_in_the_cluster_workers(spec, featured, dask_cluster):
    address, workers, started = dask_cluster
    assert len(workers) == 2 and len(set(workers.values())) == 2  # two processes

    result = search(spec, featured, n_jobs=-1, parallel_backend="dask", scheduler_address=address)
    placement = result.placement
    assert placement.backend == "dask" and placement.address == address
    assert set(placement.workers) <= set(workers), "a fit ran outside the cluster's workers"
    assert len(placement.workers) == 2, f"expected both workers to fit: {placement.workers}"
    assert placement.tasks == sum(placement.workers.values()) >= 2
    # the workers that ran the fits are the processes the test started, not this one
    assert set(placement.pids.values()) <= _descendants(started)
    assert os.getpid() not in placement.pids.values()
    assert placement.summary().startswith("search ran on 2 dask workers")
    assert loky_workers() == []

    # the same seeded search on this host finds the same model, with the same scores
    local = search(spec, featured)
    assert result.best_params == local.best_params
    assert result.best_score == pytest.approx(local.best_score, abs=1e-12)
    same = [c for c in local.cv_table if c != "mean_fit_time"]
    pd.testing.assert_frame_equal(result.cv_table[same], local.cv_table[same])
