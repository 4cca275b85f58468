"""Where the search's cross-validation fits run: a joblib backend chosen by configuration.

`search_backend(backend, address, n_jobs)` wraps a search's `fit`, makes the chosen joblib backend
active for it and yields a `Placement` that says what actually ran where, because joblib changes
its mind silently:

- `loky` (the default) runs the fits in worker processes of this host. Loky keeps its workers
  for 300 s after the last task in case they are reused; a step process that ends sooner would
  leave them behind, holding memory and keeping a Celery or Dask slot's children alive, so they
  are shut down when the block ends. In a daemonic process (a Celery prefork child, a Dask
  nanny's worker) loky cannot start children and joblib would quietly fit on one core: there the
  fits run on threads instead (sklearn's fits release the GIL), with BLAS/OpenMP threads capped
  so that the host is not oversubscribed.
- `dask` sends the fits to an existing `distributed` cluster (`address`, the scheduler's), and
  records which workers ran how many tasks, from the scheduler's own task stream (which also
  counts another client's tasks run at the same time). The fits travel to the workers as
  cloudpickle, as they do to loky's; nothing is stored that way.
- `ray` does the same on a Ray cluster (`pip install '.[ray]'`).

No Dagster import: the training core calls this, and so can a script.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

log = logging.getLogger(__name__)

BACKENDS = ("loky", "dask", "ray")
# Seconds to wait for a scheduler to answer and for its first worker: bounded, so that a wrong
# address fails the step with a message instead of hanging it.
CONNECT_TIMEOUT_S = 10.0


class SearchBackendError(RuntimeError):
    """The configured parallel backend cannot be used (unknown, not installed, unreachable)."""


@dataclass
class Placement:
    """What ran the search: the backend asked for, the one that ran and where.

    `workers` maps a Dask worker's address to the tasks it ran and `pids` to its process id
    (filled when the block ends); both stay empty for the local backends.
    """

    requested: str
    backend: str
    n_jobs: int
    reason: str = ""
    address: str | None = None
    workers: dict[str, int] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    tasks: int = 0

    def summary(self) -> str:
        """One line for a log, the asset's metadata and the MLflow run."""
        if self.backend == "dask":
            return (
                f"search ran on {len(self.workers)} dask workers of {self.address} "
                f"({', '.join(sorted(self.workers))}), {self.tasks} tasks"
            )
        if self.backend == "ray":
            return f"search ran on ray at {self.address or 'a local ray'}"
        where = f"{self.n_jobs} {'threads' if self.backend == 'threading' else 'processes'}"
        text = f"search ran on {self.backend} with {where} on this host"
        return f"{text} ({self.reason})" if self.reason else text

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "summary": self.summary()}


def _local_jobs(n_jobs: int) -> int:
    """The workers a local backend runs for `n_jobs` (joblib's rule: -1 is every core)."""
    from joblib import cpu_count

    cores = cpu_count()
    return max(1, cores + 1 + n_jobs) if n_jobs < 0 else max(1, n_jobs)


def shutdown_loky() -> bool:
    """End joblib's reusable loky workers now and wait for them; True if there were any.

    Looks at loky's module global rather than calling `get_reusable_executor()`, which would
    create (or resize) an executor just to shut it down.
    """
    from joblib.externals.loky import reusable_executor

    executor = getattr(reusable_executor, "_executor", None)
    if executor is None:
        return False
    executor.shutdown(wait=True)
    return True


@contextlib.contextmanager
def _local(n_jobs: int) -> Iterator[Placement]:
    import joblib

    jobs = _local_jobs(n_jobs)
    if multiprocessing.current_process().daemon and jobs > 1:
        from joblib import cpu_count
        from threadpoolctl import threadpool_limits

        placement = Placement(
            "loky",
            "threading",
            jobs,
            "a daemonic process (Celery prefork child, Dask worker) cannot start loky workers",
        )
        log.info(placement.summary())
        # each fit's own BLAS/OpenMP threads share the cores with the other fits
        with (
            joblib.parallel_config(backend="threading", n_jobs=n_jobs),
            threadpool_limits(max(1, cpu_count() // jobs)),
        ):
            yield placement
        return
    placement = Placement("loky", "loky", jobs)
    try:
        with joblib.parallel_config(backend="loky", n_jobs=n_jobs):
            yield placement
    finally:
        shutdown_loky()


def _client(address: str | None, timeout: float):
    """A `distributed.Client` on the scheduler at `address`, with at least one worker."""
    if not address:
        raise SearchBackendError(
            "parallel_backend 'dask' needs scheduler_address (e.g. tcp://127.0.0.1:8786)"
        )
    try:
        from distributed import Client
    except ImportError as e:
        raise SearchBackendError(
            "parallel_backend 'dask' needs distributed: pip install '.[dask]'"
        ) from e
    try:
        client = Client(address, timeout=timeout, set_as_default=False)
    except Exception as e:
        raise SearchBackendError(
            f"scheduler_address {address!r}: no dask scheduler answered within {timeout:g} s "
            f"({type(e).__name__}: {e})"
        ) from e
    try:
        client.wait_for_workers(1, timeout=timeout)
    except Exception as e:
        client.close()
        raise SearchBackendError(
            f"scheduler_address {address!r}: the scheduler has no worker after {timeout:g} s"
        ) from e
    return client


@contextlib.contextmanager
def _dask(address: str | None, n_jobs: int, timeout: float) -> Iterator[Placement]:
    import joblib
    from distributed import get_task_stream

    client = _client(address, timeout)
    placement = Placement("dask", "dask", n_jobs, address=address)
    try:
        with (
            get_task_stream(client=client) as stream,
            joblib.parallel_config(
                backend="dask", n_jobs=n_jobs, client=client, wait_for_workers_timeout=timeout
            ),
        ):
            yield placement
        ran = [t for t in stream.data if "joblib_probe" not in str(t.get("key"))]
        for task in ran:
            placement.workers[task["worker"]] = placement.workers.get(task["worker"], 0) + 1
        placement.tasks = len(ran)
        if placement.workers:
            placement.pids = client.run(_pid, workers=list(placement.workers))
        log.info(placement.summary())
    finally:
        client.close()


def _pid() -> int:
    import os

    return os.getpid()


@contextlib.contextmanager
def _ray(address: str | None, n_jobs: int) -> Iterator[Placement]:
    try:
        import ray
        from ray.util.joblib import register_ray
    except ImportError as e:
        raise SearchBackendError(
            "parallel_backend 'ray' needs ray, which is not installed: pip install '.[ray]'"
        ) from e
    import joblib

    register_ray()
    try:
        ray.init(address=address or None, ignore_reinit_error=True, include_dashboard=False)
    except Exception as e:
        raise SearchBackendError(
            f"scheduler_address {address!r}: could not connect to ray ({type(e).__name__}: {e})"
        ) from e
    try:
        with joblib.parallel_config(backend="ray", n_jobs=n_jobs):
            yield Placement("ray", "ray", n_jobs, address=address)
    finally:
        ray.shutdown()


@contextlib.contextmanager
def search_backend(
    backend: str = "loky",
    address: str | None = None,
    n_jobs: int = -1,
    *,
    timeout: float = CONNECT_TIMEOUT_S,
) -> Iterator[Placement]:
    """Within the block joblib runs on `backend`; yields the `Placement` (complete at exit).

    `address` is the Dask scheduler's (`tcp://host:8786`) or the Ray cluster's; a wrong one
    fails within `timeout` seconds with a `SearchBackendError` naming `scheduler_address`.
    """
    if backend not in BACKENDS:
        raise SearchBackendError(
            f"parallel_backend {backend!r} is unknown (known: {', '.join(BACKENDS)})"
        )
    if backend == "loky":
        manager = _local(n_jobs)
    elif backend == "dask":
        manager = _dask(address, n_jobs, timeout)
    else:
        manager = _ray(address, n_jobs)
    with manager as placement:
        yield placement
