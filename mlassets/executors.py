"""How a run's steps execute, chosen by `MLASSETS_EXECUTOR`: Dagster's own executors, configured
from the environment.

| name | Dagster executor | settings (environment) |
|---|---|---|
| `in_process` (default) | `in_process_executor` | |
| `multiprocess` | `multiprocess_executor` | `MLASSETS_MAX_CONCURRENT` (default 2) |
| `celery` | `dagster_celery.celery_executor` | `MLASSETS_CELERY_BROKER`, `MLASSETS_CELERY_BACKEND`, `MLASSETS_CELERY_QUEUE` |
| `dask` | `dagster_dask.dask_executor` | `DASK_SCHEDULER_ADDRESS` (else a local cluster of `MLASSETS_DASK_WORKERS`) |
| `k8s_job` | `dagster_k8s.k8s_job_executor` | run config / the Helm chart's values |

`in_process` stays the default: `training_job` is a chain, and one process keeps the frames in
memory and imports sklearn and MLflow once. The others run each step in its own process or
worker, which needs what they share to be shared: values on the IO manager's storage
(`MLASSETS_STORAGE`), a Dagster instance every worker reaches (the `postgres` profile across
hosts) and one MLflow tracking store. Celery, Dask and Kubernetes are imported only when chosen,
so that loading the code location stays fast.
"""

from __future__ import annotations

import os

from dagster import ExecutorDefinition

from mlassets import settings

DEFAULT_MAX_CONCURRENT = 2  # the cores of the machine this was measured on
DEFAULT_BROKER = "pyamqp://guest@127.0.0.1:5672//"
DEFAULT_BACKEND = "rpc://"
DEFAULT_QUEUE = "dagster"  # dagster-celery's own default queue
DEFAULT_DASK_WORKERS = 2


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{name}={raw!r} must be a positive integer")
    return value


def celery_config() -> dict:
    """The celery executor's config (also what a worker's `-y` file holds under execution.config)."""
    return {
        "broker": os.environ.get("MLASSETS_CELERY_BROKER") or DEFAULT_BROKER,
        "backend": os.environ.get("MLASSETS_CELERY_BACKEND") or DEFAULT_BACKEND,
        "config_source": {
            "task_default_queue": os.environ.get("MLASSETS_CELERY_QUEUE") or DEFAULT_QUEUE
        },
    }


def dask_config() -> dict:
    """The dask executor's cluster: the scheduler at `$DASK_SCHEDULER_ADDRESS`, else a local one."""
    address = os.environ.get("DASK_SCHEDULER_ADDRESS", "").strip()
    if address:
        return {"cluster": {"existing": {"address": address}}}
    workers = _int_env("MLASSETS_DASK_WORKERS", DEFAULT_DASK_WORKERS)
    return {
        "cluster": {"local": {"n_workers": workers, "threads_per_worker": 1, "host": "127.0.0.1"}}
    }


def executor_def(name: str | None = None) -> ExecutorDefinition:
    """The Dagster executor `name` (default: `settings.executor()`, from `MLASSETS_EXECUTOR`)."""
    name = name or settings.executor()
    if name == "in_process":
        from dagster import in_process_executor

        return in_process_executor
    if name == "multiprocess":
        from dagster import multiprocess_executor

        max_concurrent = _int_env("MLASSETS_MAX_CONCURRENT", DEFAULT_MAX_CONCURRENT)
        return multiprocess_executor.configured({"max_concurrent": max_concurrent})
    if name == "celery":
        from dagster_celery import celery_executor

        return celery_executor.configured(celery_config())
    if name == "dask":
        from dagster_dask import dask_executor

        return dask_executor.configured(dask_config())
    if name == "k8s_job":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    raise ValueError(f"executor {name!r} is unknown (known: {', '.join(settings.EXECUTORS)})")
