"""Resources: the dataset, MLflow tracking (one run per Dagster run and model) and the model
registry."""

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dagster import ConfigurableResource, InitResourceContext
from pydantic import PrivateAttr

from mlassets import settings
from mlassets.config import DriftConfig
from mlassets.ml.owner import OWNER_ENV, current
from mlassets.spec import DEFAULT_SPEC, DatasetSpec, load_spec

if TYPE_CHECKING:
    from mlassets.catalog import Model


class DatasetResource(ConfigurableResource):
    """The user's datasets: one spec file, or a folder of specs (one model each), and the folder
    their relative paths resolve against (None: each spec's own folder).

    A spec is read once per resource and model, when a step (or a sensor tick) first asks for it:
    every step of a run sees the same spec, and an edited file is seen by the next run.
    """

    spec_path: str = str(DEFAULT_SPEC)
    specs_dir: str | None = None
    data_root: str | None = None
    _specs: dict = PrivateAttr(default_factory=dict)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        """One spec file is read when a run sets the resource up (a bad one fails the run there);
        a folder's specs are read per model when a step asks, so one bad spec stops only its own
        model's runs."""
        if not self.specs_dir:
            self.spec()

    def spec(self, model: "Model | str | None" = None) -> DatasetSpec:
        """The validated spec of a model (`mlassets.catalog.Model`, or its name), of the one spec
        file when no folder is set. A component's model names its own file."""
        from mlassets.catalog import Model
        from mlassets.spec import SpecError, find_spec

        path = model.spec_path if isinstance(model, Model) else None
        name = model.name if isinstance(model, Model) else model
        key = path or name
        if key not in self._specs:
            if path:
                self._specs[key] = load_spec(path)
            elif self.specs_dir:
                if name is None:
                    raise SpecError(f"MLASSETS_SPECS={self.specs_dir}: which model? (no name)")
                self._specs[key] = find_spec(self.specs_dir, name)
            else:
                self._specs[key] = load_spec(self.spec_path)
        return self._specs[key]

    def root(self, model: "Model | str | None" = None) -> str | None:
        """Where the model's relative paths resolve: the home for a bundled spec (its data is
        generated there), else the spec's own folder (None); a model found through the
        environment uses the environment's root."""
        from mlassets.catalog import Model

        if isinstance(model, Model) and model.spec_path:
            return str(settings.home()) if settings.is_bundled(model.spec_path) else None
        return self.data_root

    def source_uri(self, model: "Model | str | None" = None) -> str:
        spec = self.spec(model)
        return spec.resolve(spec.source, self.root(model))

    def landing_uri(self, model: "Model | str | None" = None) -> str | None:
        spec = self.spec(model)
        return spec.resolve(spec.landing, self.root(model)) if spec.landing else None

    def labels_uri(self, model: "Model | str | None" = None) -> str | None:
        """The folder where labels arrive after their rows (`labels` in the spec), or None."""
        spec = self.spec(model)
        return spec.resolve(spec.labels, self.root(model)) if spec.labels else None

    def catalog(self):
        """The models these specs make (`mlassets.catalog`), read at code-location load."""
        from mlassets.catalog import catalog

        return catalog(self.spec_path, self.specs_dir)


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
        """A client bound to this registry, its URIs explicit (MLflow's globals are left alone:
        in a daemon or webserver process another model's sensor may be using them)."""
        from mlflow import MlflowClient

        return MlflowClient(self.tracking_uri, self.registry_uri or self.tracking_uri)


class MonitoringResource(ConfigurableResource):
    """How monitoring decides: one set of thresholds for the asset and the sensor alike."""

    drift: DriftConfig = DriftConfig()
    retrain_run_config: dict[str, Any] = {}

    def drift_for(self, m) -> DriftConfig:
        """Model `m`'s thresholds: its component's `drift` fields over the resource's."""
        if not m.settings.drift:
            return self.drift
        return DriftConfig(**{**self.drift.model_dump(), **m.settings.drift})

    def retrain_config(self, raw_data_config: dict, m) -> dict:
        """Run config of a retraining run of model `m` (`mlassets.catalog.Model`): the user's
        (its component's `retrain`, else the resource's; e.g. a search strategy, its steps named
        as for any model or as for this one) plus the batches."""
        chosen = self.retrain_run_config if m.settings.retrain is None else m.settings.retrain
        config = json.loads(json.dumps(chosen))  # a deep copy
        ops = config["ops"] = m.run_config_for(config.get("ops") or {})
        ops.setdefault(m.op("raw_data"), {}).setdefault("config", {}).update(raw_data_config)
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


class MlflowTracking(ConfigurableResource):
    """Every model's MLflow run for a Dagster run, under one resource key (`mlflow`).

    Ours, not dagster-mlflow's `mlflow_tracking` (issue 24.7): that resource sets MLflow's global
    experiment, starts a fluent run when it is set up, unregisters MLflow's exit hook and holds one
    experiment, so a folder of models needed one resource key each, and its run id had to be
    patched and its generator advanced by hand. Here a step asks `run_for(context, model)`: the
    model's run for this Dagster run, found in the model's own experiment by the tag
    `dagster_run_id` (the tag dagster-mlflow uses, so existing searches keep working) or created
    through an explicit client. Each step resumes it and ends it (`mlflow_run`), so no MLflow run
    is left RUNNING when a check or a failure ends the Dagster run early.
    """

    tracking_uri: str
    registry_uri: str | None = None
    artifact_location: str | None = None
    extra_tags: dict[str, str] = {}
    # (Dagster run id, model) -> its MLflow run id, once found or created in this process (a
    # resource object may serve several runs: a test session, `materialize` called twice)
    _runs: dict = PrivateAttr(default_factory=dict)

    @contextlib.contextmanager
    def yield_for_execution(self, context: InitResourceContext) -> Iterator["MlflowTracking"]:
        """Around a step of a run: MLflow's fluent logging (log_model has no client argument)
        on this store, and the owner's identity for the processes the step starts (joblib's
        workers too), so a sweep can find them if this process is killed; both restored after,
        so a long-lived process (a notebook, a test session) keeps neither."""
        import mlflow

        uri_before = os.environ.get("MLFLOW_TRACKING_URI")
        owner_before = os.environ.get(OWNER_ENV)
        os.environ[OWNER_ENV] = str(current())
        mlflow.set_tracking_uri(self.tracking_uri)
        try:
            yield self
        finally:
            mlflow.set_tracking_uri(uri_before)
            if owner_before is None:
                os.environ.pop(OWNER_ENV, None)
            else:
                os.environ[OWNER_ENV] = owner_before

    def client(self):
        from mlflow import MlflowClient

        return MlflowClient(self.tracking_uri, self.registry_uri or self.tracking_uri)

    def run_for(self, context, model: str) -> str:
        """The MLflow run of `model` for the Dagster run of `context`: found by its tag, else
        created (the first step that logs). The first call in a process checks the store, creates
        the experiment where its artifacts belong, sweeps what killed runs left and marks the
        run with this process as its owner."""
        if (context.run_id, model) in self._runs:
            return self._runs[context.run_id, model]
        from mlflow.entities import RunTag

        from mlassets.ml.recovery import DAGSTER_RUN_TAG
        from mlassets.ml.runs import find_or_create_run
        from mlassets.ml.services import check_local_store, first_contact

        # the run's first request to the store: a store that is down or cannot be written fails
        # here, naming its URI, within MLflow's own retry settings (`mlassets.settings`)
        check_local_store(self.tracking_uri, STORE_HINT)
        experiment = first_contact(
            self.tracking_uri,
            lambda: ensure_experiment(self.tracking_uri, model, self.artifact_location),
        )
        client = self.client()
        sweep_debris(context, client, model)
        run_id = find_or_create_run(
            client,
            experiment,
            {DAGSTER_RUN_TAG: context.run_id},
            context.dagster_run.job_name,
            {**self.extra_tags, **current().tags()},
        )
        # a resumed run's owner is now this process (a crash from here on is this one's)
        client.log_batch(run_id, tags=[RunTag(k, v) for k, v in current().tags().items()])
        self._runs[context.run_id, model] = run_id
        return run_id


def sweep_debris(context, client, model_name: str) -> dict:
    """What killed runs left behind, cleaned at the next run's start (see `mlassets.ml.recovery`):
    their MLflow runs FAILED, their Dagster runs failed, their `pending` versions abandoned,
    their child processes killed. Never fails the run that sweeps; says what it did."""
    from mlassets.ml.recovery import sweep

    try:
        experiment = client.get_experiment_by_name(model_name)
        done = sweep(client, [experiment.experiment_id] if experiment else [], model_name)
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
    if done.get("left_alone"):  # RUNNING elsewhere (another container, host, boot) or of old
        context.log.info(f"sweep left alone runs it cannot judge: {str(done['left_alone'])[:2000]}")
    return done


@contextlib.contextmanager
def mlflow_run(context) -> Iterator[str]:
    """Make this step's model's MLflow run (`MlflowTracking.run_for`) active for the step, and
    end it when the step ends: FINISHED, or FAILED when the step fails. The next step resumes it,
    so the last step to touch it decides, and no MLflow run is left RUNNING when a check or a
    failure ends the Dagster run early."""
    import mlflow

    from mlassets.catalog import model_of
    from mlassets.ml.faults import transient_fault
    from mlassets.ml.status import RUN_FAILED, RUN_FINISHED

    run_id = context.resources.mlflow.run_for(context, model_of(context).name)
    active = mlflow.active_run()
    if active is None or active.info.run_id != run_id:
        if active is not None:
            mlflow.end_run()
        mlflow.start_run(run_id=run_id)
    try:
        transient_fault(context.op_def.name)  # only the retry tests set it
        yield run_id
    except BaseException:
        mlflow.end_run(status=RUN_FAILED)
        raise
    mlflow.end_run(status=RUN_FINISHED)


def value_store_path(root: str, model_name: str) -> str:
    """Each model's values under its own name (as Dagster names it, `Model.ident`, so that one
    spec alone or in a folder keeps its values in one place): two specs never share a value."""
    return f"{root.rstrip('/')}/{model_name}"


def default_resources(spec: DatasetSpec | None = None) -> dict:
    """The embedded default's resources, honouring the environment (see `mlassets.settings`):
    for `spec` alone, or for the specs the environment names (`MLASSETS_SPEC` / `MLASSETS_SPECS`).

    One model keeps its values under its name; a folder of models shares one value store (their
    asset keys carry their names). Every model's MLflow runs go through the one `mlflow`
    resource, each in its own experiment (named after the model), so a run that touches two
    models logs each to its own."""
    from mlassets.io_managers import ValueStore

    uri = settings.tracking_uri()
    folder = None if spec is not None else settings.specs_dir()
    path = str(spec.path or DEFAULT_SPEC) if spec is not None else settings.spec_path()
    dataset = DatasetResource(
        spec_path=path or str(DEFAULT_SPEC), specs_dir=folder, data_root=settings.data_root()
    )
    models = dataset.catalog().models
    storage = settings.storage_root()
    return {
        "io_manager": ValueStore(
            base_path=storage if folder else value_store_path(storage, models[0].ident)
        ),
        "dataset": dataset,
        "registry": ModelRegistry(tracking_uri=uri, registry_uri=settings.registry_uri()),
        "monitoring": MonitoringResource(
            drift=DriftConfig(**settings.drift_overrides()),
            retrain_run_config=settings.retrain_run_config(),
        ),
        "mlflow": MlflowTracking(
            tracking_uri=uri,
            registry_uri=settings.registry_uri(),
            artifact_location=settings.artifact_root() if client_writes_artifacts(uri) else None,
        ),
    }
