"""Resources: the dataset, MLflow tracking (dagster-mlflow) and the model registry."""

import contextlib
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dagster import (
    ConfigurableResource,
    Field,
    InitResourceContext,
    Noneable,
    Permissive,
    StringSource,
    resource,
)
from pydantic import PrivateAttr

from mlassets import settings
from mlassets.config import DriftConfig
from mlassets.spec import DEFAULT_SPEC, DatasetSpec, load_spec

OWNER_ENV = "MLASSETS_OWNER_PID"


class DatasetResource(ConfigurableResource):
    """The user's dataset: its spec file and the folder its relative paths resolve against.

    The spec is read once per resource, when a run (or a sensor tick) sets the resource up: every
    step of a run sees the same spec, and an edited file is seen by the next run.
    """

    spec_path: str = str(DEFAULT_SPEC)
    data_root: str | None = None
    _spec: DatasetSpec | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        self._spec = load_spec(self.spec_path)

    def spec(self) -> DatasetSpec:
        """The validated spec, as read when the resource was set up."""
        if self._spec is None:  # used outside Dagster's resource lifecycle (scripts, tests)
            self._spec = load_spec(self.spec_path)
        return self._spec

    def source_uri(self) -> str:
        spec = self.spec()
        return spec.resolve(spec.source, self.data_root)

    def landing_uri(self) -> str | None:
        spec = self.spec()
        return spec.resolve(spec.landing, self.data_root) if spec.landing else None


# What to change when the local MLflow store cannot be written.
STORE_HINT = (
    "Set MLASSETS_HOME to a writable folder (the default store is <MLASSETS_HOME>/mlflow.db), "
    "or MLFLOW_TRACKING_URI to another store."
)


class ModelRegistry(ConfigurableResource):
    """The MLflow model registry (an `MlflowClient` on the tracking/registry URI)."""

    tracking_uri: str
    registry_uri: str | None = None

    def setup_for_execution(self, context: InitResourceContext) -> None:
        """A store that cannot be used fails here, naming it: a local one that cannot be written
        (not two minutes later inside MLflow with a bare `sqlite3.OperationalError`), a server
        that does not answer (not after every step's retries). One request to a server.
        Only for a run: a sensor's tick says its own errors as a skip (`drift_sensor`), which an
        error here would pre-empt with a failed tick."""
        from mlassets.ml.services import check_local_store, first_contact, local_store_path

        if context.dagster_run is None:
            return
        registry = self.registry_uri or self.tracking_uri
        for uri in dict.fromkeys([self.tracking_uri, registry]):
            check_local_store(uri, STORE_HINT)
        if local_store_path(registry) is None:
            first_contact(
                registry,
                lambda: self.client().search_registered_models(max_results=1),
                role="model registry",
                variable="MLFLOW_REGISTRY_URI" if self.registry_uri else "MLFLOW_TRACKING_URI",
            )

    def client(self):
        """A client bound to this registry; also points mlflow's globals at it for `models:/` URIs."""
        import mlflow
        from mlflow import MlflowClient

        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.registry_uri or self.tracking_uri)
        return MlflowClient(self.tracking_uri, self.registry_uri or self.tracking_uri)


class MonitoringResource(ConfigurableResource):
    """How monitoring decides: one set of thresholds for the asset and the sensor alike."""

    drift: DriftConfig = DriftConfig()
    retrain_run_config: dict[str, Any] = {}

    def retrain_config(self, raw_data_config: dict) -> dict:
        """Run config of a retraining run: the user's (e.g. a search strategy) plus the batches."""
        config = json.loads(json.dumps(self.retrain_run_config))  # a deep copy
        ops = config.setdefault("ops", {})
        ops.setdefault("raw_data", {}).setdefault("config", {}).update(raw_data_config)
        return config


def ensure_experiment(tracking_uri: str, name: str, artifact_location: str | None) -> str:
    """Create the experiment with an explicit artifact location if it does not exist yet.

    Without this MLflow puts artifacts in `./mlruns` of whatever folder the process runs in.
    """
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    return client.create_experiment(name, artifact_location=artifact_uri(artifact_location))


def _scheme(uri: str) -> str:
    """A URI's scheme without its SQLAlchemy driver (`postgresql+psycopg2` -> `postgresql`);
    empty for a local path (a Windows drive letter is a path, not a scheme)."""
    from urllib.parse import urlsplit

    scheme = urlsplit(uri).scheme.lower()
    return "" if len(scheme) <= 1 else scheme.split("+", 1)[0]


def artifact_uri(location: str | None) -> str | None:
    """An experiment's artifact location as MLflow wants it: a local path becomes an absolute
    `file://` URI (else MLflow resolves it against whatever folder a process runs in); a URL
    (`s3://`, `gs://`, `mlflow-artifacts:/`, `file://`) is already absolute and passes through."""
    if not location:
        return None
    return location if _scheme(location) else Path(location).resolve().as_uri()


# Tracking stores the MLflow client talks to directly (a database, a folder): the client writes
# artifacts itself, so it must be told where. Any other scheme (http, https, databricks) is a
# server, which decides where artifacts go; so are MLflow's bare names for Databricks.
CLIENT_SIDE_STORES = frozenset({"", "file", "sqlite", "postgresql", "postgres", "mysql", "mssql"})
BARE_SERVERS = frozenset({"databricks", "databricks-uc", "uc"})


def client_writes_artifacts(tracking_uri: str) -> bool:
    """Whether an MLflow client on `tracking_uri` writes artifacts itself (see CLIENT_SIDE_STORES)."""
    if tracking_uri.strip().lower() in BARE_SERVERS:
        return False
    return _scheme(tracking_uri) in CLIENT_SIDE_STORES


@resource(
    config_schema={
        "experiment_name": Field(StringSource, description="MLflow experiment name."),
        "model_name": Field(
            Noneable(StringSource),
            default_value=None,
            is_required=False,
            description="Registered model whose pending versions the start-of-run sweep may "
            "abandon (default: the experiment name, as default_resources names it).",
        ),
        "mlflow_tracking_uri": Field(Noneable(StringSource), default_value=None, is_required=False),
        "artifact_location": Field(
            Noneable(StringSource),
            default_value=None,
            is_required=False,
            description="Artifact folder or URL (s3://...) for a new experiment (tracking "
            "stores the client writes artifacts for: a database or a folder, not a server).",
        ),
        "extra_tags": Field(Permissive(), is_required=False),
    },
    description="dagster-mlflow's mlflow_tracking, after creating the experiment where it belongs.",
)
def mlflow_tracking(context):
    """dagster-mlflow's `mlflow_tracking` resource (one MLflow run per Dagster run).

    Wrapped only to create the experiment with an explicit artifact location first, and to keep
    `import mlflow` out of code-location load time.
    """
    from dagster_mlflow import mlflow_tracking as dagster_mlflow_tracking

    from mlassets.ml.services import check_local_store, first_contact

    cfg = context.resource_config
    if cfg.get("mlflow_tracking_uri"):
        # the run's first request to the store: a store that is down or cannot be written fails
        # here, naming its URI, within MLflow's own retry settings (`mlassets.settings`)
        uri = cfg["mlflow_tracking_uri"]
        check_local_store(uri, STORE_HINT)
        first_contact(
            uri,
            lambda: ensure_experiment(uri, cfg["experiment_name"], cfg.get("artifact_location")),
        )
    import mlflow

    # Every process this run starts (joblib's workers too) inherits the owner's pid, so a sweep
    # can find them if this process is killed.
    owner_before = os.environ.get(OWNER_ENV)
    os.environ[OWNER_ENV] = str(os.getpid())
    try:
        sweep_debris(
            context, cfg.get("mlflow_tracking_uri"), cfg.get("model_name") or cfg["experiment_name"]
        )
        lifecycle = dagster_mlflow_tracking.resource_fn(context)
        tracker = next(lifecycle)
        if tracker.mlflow_run_id is None:  # a new run: remember it, steps close and resume it
            tracker.mlflow_run_id = mlflow.active_run().info.run_id
        mlflow.set_tags({"mlassets.host": socket.gethostname(), "mlassets.pid": str(os.getpid())})
        # Detach now: each step that logs resumes the run and closes it (`mlflow_run`), so a
        # step that fails before logging cannot leave it RUNNING and active in this process.
        mlflow.end_run()
        try:
            yield tracker
        finally:
            next(lifecycle, None)  # dagster-mlflow's cleanup (marks the run FAILED on an error)
    finally:
        # a long-lived process (a notebook, a test session) must not pass this run's mark on
        if owner_before is None:
            os.environ.pop(OWNER_ENV, None)
        else:
            os.environ[OWNER_ENV] = owner_before


def sweep_debris(context, tracking_uri: str | None, model_name: str) -> dict:
    """What killed runs left behind, cleaned at the next run's start (see `mlassets.ml.recovery`):
    their MLflow runs FAILED, their Dagster runs failed, their `pending` versions abandoned,
    their child processes killed. Never fails the run that sweeps; says what it did."""
    import mlflow
    from mlflow import MlflowClient

    from mlassets.ml.recovery import sweep

    uri = tracking_uri or mlflow.get_tracking_uri()
    try:
        client = MlflowClient(uri, settings.registry_uri() or uri)
        experiment = client.get_experiment_by_name(model_name)
        done = sweep(
            client,
            [experiment.experiment_id] if experiment else [],
            model_name,
            socket.gethostname(),
        )
    except Exception as e:  # a sweep must never stop the work it precedes
        context.log.warning(f"sweep of killed runs' debris failed: {type(e).__name__}: {e}")
        return {}
    if done.get("errors"):
        context.log.warning(f"sweep could not handle everything: {str(done['errors'])[:2000]}")
    for run_id in done.get("dagster_runs", []):
        run = context.instance.get_run_by_id(run_id)
        if run is not None and not run.is_finished:
            context.instance.report_run_failed(
                run, "its process died (found by the next run's sweep)"
            )
    if any(done.get(k) for k in ("failed_runs", "abandoned_versions", "killed_processes")):
        context.log.warning(f"swept what killed runs left behind: {str(done)[:2000]}")
    return done


@contextlib.contextmanager
def mlflow_run(context) -> Iterator[str]:
    """Make the Dagster run's MLflow run active for one step and close it when the step ends.

    dagster-mlflow resumes the same MLflow run in every step (it finds it by the `dagster_run_id`
    tag), so ending it here after each step means no MLflow run is ever left RUNNING, even when a
    check or a failure ends the Dagster run early: the last step to touch it decides FINISHED or
    FAILED.
    """
    import mlflow

    from mlassets.ml.faults import transient_fault

    run_id = context.resources.mlflow.mlflow_run_id
    active = mlflow.active_run()
    if active is None or active.info.run_id != run_id:
        if active is not None:
            mlflow.end_run()
        mlflow.start_run(run_id=run_id)
    try:
        transient_fault(context.op_def.name)  # only the retry tests set it
        yield run_id
    except BaseException:
        mlflow.end_run(status="FAILED")
        raise
    mlflow.end_run(status="FINISHED")


def value_store_path(root: str, model_name: str) -> str:
    """Each model's values under its own name: two specs in one home never share a value."""
    return f"{root.rstrip('/')}/{model_name}"


def default_resources(spec: DatasetSpec) -> dict:
    """The embedded default's resources, honouring the environment (see `mlassets.settings`)."""
    uri = settings.tracking_uri()
    from mlassets.io_managers import ValueStore

    return {
        "io_manager": ValueStore(base_path=value_store_path(settings.storage_root(), spec.name)),
        "dataset": DatasetResource(
            spec_path=str(spec.path or DEFAULT_SPEC), data_root=settings.data_root()
        ),
        "registry": ModelRegistry(tracking_uri=uri, registry_uri=settings.registry_uri()),
        "monitoring": MonitoringResource(
            drift=DriftConfig(**settings.drift_overrides()),
            retrain_run_config=settings.retrain_run_config(),
        ),
        "mlflow": mlflow_tracking.configured(
            {
                "experiment_name": spec.name,
                "model_name": spec.name,
                "mlflow_tracking_uri": uri,
                "artifact_location": settings.artifact_root()
                if client_writes_artifacts(uri)
                else None,
            }
        ),
    }
