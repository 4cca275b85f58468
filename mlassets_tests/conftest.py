"""Shared fixtures: a real Dagster instance and a real MLflow SQLite registry in temp folders."""

import contextlib
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")


# --- test tiers ---------------------------------------------------------------------------------
# Each test module declares its tier (`pytestmark = pytest.mark.unit|integration|e2e`), a test of
# another tier carries its own mark, and mlassets_tests/tiers.py fails the collection on any test
# without one. unit: the functional core and small pieces, no Dagster run, no registry round trip of
# seconds (`make test-fast` runs these: keep the tier under a minute on 2 cores); integration:
# Dagster runs in process on a real instance and store; e2e: the real CLI, daemon, webserver,
# servers and separate processes (every `services` test).
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from mlassets_tests.tiers import apply

    apply(items)


# --- nothing is written under the checkout ------------------------------------------------------
# After `make test` on a clean clone the clone's `.mlassets/mlartifacts/` once held a test run's
# artifacts: `make` exports MLASSETS_HOME=<checkout>/.mlassets (and DAGSTER_HOME under it), and
# without it the default is `./.mlassets` of the working folder, the checkout again. So the session
# points both at a temporary stand-in: no test reads or writes a developer's own home, and whatever
# lands in the stand-in came from a test that relied on the default instead of its own tmp_path.
# Two places are watched, each module when it ends (the error names the module) and the session
# at its end (session fixtures): the stand-in home, where every file counts, and the checkout,
# where only files that did not exist at the start count (a developer's own data stays allowed)
# and a new source file git does not ignore is someone editing the project (it shows in `git
# status`), not a test writing. Cost: one walk of ~200 files, about a millisecond.
REPO = Path(__file__).resolve().parents[1]
_NOT_WALKED = {".venv", ".git", "__pycache__", ".pytest_cache", ".ruff_cache"}
_SOURCE_SUFFIXES = {".py", ".md", ".toml", ".cfg", ".txt", ".sh", ".yaml", ".yml", ".json"}
_SESSION_HOME: list[
    Path
] = []  # the stand-in for the default MLASSETS_HOME, once the session starts
_SEEN: set[Path] = set()  # every file judged so far (each is judged, and blamed, once)


def files_under(root: Path) -> set[Path]:
    """Every file under `root` outside the venv, git and caches (absolute paths)."""
    found: set[Path] = set()
    stack = [str(root)]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except FileNotFoundError:  # the stand-in home before anything was written to it
            continue
        for entry in entries:
            if entry.name in _NOT_WALKED or entry.name.endswith(".egg-info"):
                continue
            if entry.is_dir(follow_symlinks=False):
                stack.append(entry.path)
            else:
                found.add(Path(entry.path))
    return found


def _git_ignored(paths: list[Path]) -> set[Path]:
    """Which of `paths` (under the checkout) git ignores; all when git cannot say (not a clone)."""
    try:
        proc = subprocess.run(
            ["git", "-C", str(REPO), "check-ignore", "--no-index", "--stdin"],
            input="\n".join(p.relative_to(REPO).as_posix() for p in paths),
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return set(paths)
    if proc.returncode not in (0, 1):  # 1: none is ignored; anything else: git could not say
        return set(paths)
    return {REPO / line for line in proc.stdout.splitlines()}


def written_by_tests() -> list[Path]:
    """Files new since the last look that a test must not have written (see the comment above)."""
    home = _SESSION_HOME[0] if _SESSION_HOME else None
    new = sorted((files_under(REPO) | (files_under(home) if home else set())) - _SEEN)
    if not new:
        return []
    _SEEN.update(new)
    in_repo = [p for p in new if p.is_relative_to(REPO)]
    ignored = _git_ignored(in_repo) if in_repo else set()
    return [
        p
        for p in new
        if not p.is_relative_to(REPO) or p in ignored or p.suffix not in _SOURCE_SUFFIXES
    ]


def describe_written(paths: list[Path], limit: int = 10) -> str:
    shown = "\n".join(f"  {p}" for p in paths[:limit])
    more = f"\n  ... and {len(paths) - limit} more" if len(paths) > limit else ""
    return (
        f"{len(paths)} file(s) written under the checkout {REPO} or the default home "
        f"(MLASSETS_HOME={os.environ.get('MLASSETS_HOME')}): use tmp_path, and give "
        f"subprocesses their own MLASSETS_HOME, DAGSTER_HOME and cwd:\n{shown}{more}"
    )


def pytest_sessionstart(session: pytest.Session) -> None:
    import tempfile

    home = Path(tempfile.mkdtemp(prefix="mlassets-tests-")) / "default_home"
    _SESSION_HOME.append(home)
    os.environ["MLASSETS_HOME"] = str(home)
    os.environ["DAGSTER_HOME"] = str(home / "dagster")
    _SEEN.update(files_under(REPO))


@pytest.fixture(autouse=True, scope="module")
def _nothing_written_under_checkout(request):
    """Fails the module (an error at its last test's teardown) that wrote under the checkout."""
    yield
    written = written_by_tests()
    if written:
        pytest.fail(f"{request.node.nodeid}: {describe_written(written)}", pytrace=False)


_WRITTEN_AT_END: list[Path] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Session fixtures are torn down by now: what they wrote fails the session."""
    import shutil

    _WRITTEN_AT_END.extend(written_by_tests())
    if _WRITTEN_AT_END and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    if _SESSION_HOME and not files_under(_SESSION_HOME[0]):  # else kept, to look at
        shutil.rmtree(_SESSION_HOME[0].parent, ignore_errors=True)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if _WRITTEN_AT_END:
        terminalreporter.section("written under the checkout", sep="=", red=True)
        terminalreporter.write_line(f"after the last test: {describe_written(_WRITTEN_AT_END)}")


# Small data and a one-point search keep each graph run to seconds; 6,000 seeded rows are enough
# for the default gates (accuracy >= 0.85, F1 >= 0.80) to pass deterministically.
TEST_ROWS = 6000
FAST_TRAINING = {
    "strategy": "grid",
    "param_grid": {"n_estimators": [40], "max_depth": [12]},
    "cv_folds": 3,
    "n_jobs": 2,
}
# The same search without a process pool: where the search's placement is not under test (it is in
# test_executors, test_crash and ml/test_parallel), a loky pool only adds its start-up to a run:
# two worker processes importing sklearn, about 4 s of candidate_model on a quiet machine (2.2 s
# against 6.1 s), 8-10 s on a loaded one, and more in a cold `dagster` process.
SERIAL_TRAINING = {**FAST_TRAINING, "n_jobs": 1}


def sensor_tick(env, cursor: str | None = None):
    """One tick of the code location's `drift_sensor` (one model: unprefixed names) on `env`;
    the tick needs no tracking resource."""
    from dagster import build_sensor_context

    sensor = env.defs().get_sensor_def("drift_sensor")
    resources = {k: v for k, v in env.resources().items() if k != "mlflow"}
    return sensor(build_sensor_context(instance=env.instance, cursor=cursor, resources=resources))


def sensor_outcome(result) -> tuple[list, str | None]:
    """(run requests, skip message) of a SensorResult."""
    skip = result.skip_reason.skip_message if result.skip_reason else None
    return list(result.run_requests or []), skip


def run_config(training: dict | None = None, gates: dict | None = None) -> dict:
    """Run config for training_job: the fast search, optional gate overrides (EvaluationConfig)."""
    ops: dict = {"candidate_model": {"config": training or FAST_TRAINING}}
    if gates:
        ops["evaluation_report"] = {"config": gates}
    return {"ops": ops}


@dataclass
class Env:
    """One isolated world: a Dagster instance, an MLflow registry, a dataset."""

    root: Path
    instance: object
    tracking_uri: str
    spec_path: Path
    data_root: Path
    drift: dict | None = None

    @property
    def landing(self) -> Path:
        return self.data_root / "data" / "landing"

    def resources(self) -> dict:
        from mlassets.config import DriftConfig
        from mlassets.io_managers import ValueStore
        from mlassets.resources import (
            DatasetResource,
            MlflowTracking,
            ModelRegistry,
            MonitoringResource,
            value_store_path,
        )
        from mlassets.spec import load_spec

        name = load_spec(self.spec_path).name
        return {
            "io_manager": ValueStore(base_path=value_store_path(str(self.root / "storage"), name)),
            "dataset": DatasetResource(
                spec_path=str(self.spec_path), data_root=str(self.data_root)
            ),
            "registry": ModelRegistry(tracking_uri=self.tracking_uri),
            "monitoring": MonitoringResource(
                drift=DriftConfig(**(self.drift or {})),
                retrain_run_config=run_config(),
            ),
            "mlflow": MlflowTracking(
                tracking_uri=self.tracking_uri, artifact_location=str(self.root / "mlartifacts")
            ),
        }

    def defs(self):
        from mlassets.definitions import build_defs

        return build_defs(self.resources())

    def run(self, job: str = "training_job", config: dict | None = None):
        """Execute a job in process against this world; never raises on failure."""
        job_def = self.defs().resolve_job_def(job)
        return job_def.execute_in_process(
            run_config=config
            if config is not None
            else (run_config() if job == "training_job" else {}),
            instance=self.instance,
            raise_on_error=False,
        )

    def client(self):
        from mlflow import MlflowClient

        return MlflowClient(self.tracking_uri, self.tracking_uri)


def make_env(root: Path, instance, rows: int = TEST_ROWS) -> Env:
    """A world with the bundled fraud spec and `rows` synthetic rows as its source."""
    from mlassets.spec import DEFAULT_SPEC
    from mlassets.synthetic import fraud_frame, write_frame

    data_root = root / "data_root"
    write_frame(fraud_frame(rows, seed=7), data_root / "data" / "transactions.parquet")
    return Env(
        root=root,
        instance=instance,
        tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
        spec_path=DEFAULT_SPEC,
        data_root=data_root,
    )


_URI_KEYS = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
_SESSION_MLFLOW_URIS = {k: os.environ.get(k) for k in _URI_KEYS}


def _restore_mlflow_uris(saved: dict) -> None:
    import sys

    if "mlflow" in sys.modules:
        import mlflow

        mlflow.set_tracking_uri(saved["MLFLOW_TRACKING_URI"])
        mlflow.set_registry_uri(saved["MLFLOW_REGISTRY_URI"])
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(autouse=True)
def _mlflow_uris_restored():
    """`mlflow.set_tracking_uri` / `set_registry_uri` also write `MLFLOW_TRACKING_URI` /
    `MLFLOW_REGISTRY_URI` into `os.environ` (so that subprocesses inherit them), and
    `settings.registry_uri()` reads the latter: without this, one test's store leaks into the
    next test's CLI runs and resources. A test gets back what it started with (its module's
    fixtures may have set them on purpose); a module, what the session started with."""
    saved = {k: os.environ.get(k) for k in _URI_KEYS}
    yield
    _restore_mlflow_uris(saved)


@pytest.fixture(autouse=True, scope="module")
def _mlflow_uris_restored_per_module():
    yield
    _restore_mlflow_uris(_SESSION_MLFLOW_URIS)


@pytest.fixture
def dagster_instance(tmp_path):
    from dagster import instance_for_test

    home = tmp_path / "dagster_home"
    home.mkdir()
    with instance_for_test(temp_dir=str(home)) as instance:
        yield instance


@pytest.fixture
def env(tmp_path, dagster_instance) -> Env:
    return make_env(tmp_path, dagster_instance)


_EMPTY_STORE: list[Path] = []  # the session's empty MLflow store, once made


def empty_mlflow_store(db: Path) -> str:
    """A new, empty MLflow SQLite store at `db` (its URI, which a world then uses as its own): a
    copy of one that MLflow itself created, once per session. MLflow creates a store's tables by
    running its schema migrations, about 2 s per store (more under load); a world whose test
    is not about creating a store starts from the copy, byte for byte what MLflow would make
    (the default experiment's artifact folder aside, here the session's own temporary folder)."""
    import shutil
    import tempfile

    if not _EMPTY_STORE:
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        parent = _SESSION_HOME[0].parent if _SESSION_HOME else None
        folder = Path(tempfile.mkdtemp(prefix="empty-mlflow-store-", dir=parent))
        made = SqlAlchemyStore(f"sqlite:///{folder / 'mlflow.db'}", str(folder / "mlruns"))
        made.engine.dispose()  # nothing left in a journal: the file is the whole store
        assert sorted(p.name for p in folder.iterdir()) == ["mlflow.db"]
        _EMPTY_STORE.append(folder / "mlflow.db")
    db.parent.mkdir(parents=True, exist_ok=True)
    assert not db.exists(), f"{db} exists: a store is new or is not copied over"
    shutil.copyfile(_EMPTY_STORE[0], db)
    return f"sqlite:///{db}"


@contextlib.contextmanager
def trained_world(
    root: Path, rows: int = TEST_ROWS, training: dict | None = None
) -> Iterator[tuple[Env, object]]:
    """A world where training_job already put version 1 behind `production`: (env, that run).
    Its MLflow store starts as `empty_mlflow_store`; `training` is candidate_model's config,
    by default SERIAL_TRAINING (what later runs of the test do is theirs to choose)."""
    from dagster import instance_for_test

    (root / "dagster_home").mkdir()
    uri = empty_mlflow_store(root / "mlflow.db")
    with instance_for_test(temp_dir=str(root / "dagster_home")) as instance:
        world = make_env(root, instance, rows)
        assert world.tracking_uri == uri
        result = world.run(config=run_config(training or SERIAL_TRAINING))
        assert result.success, "baseline training run failed"
        yield world, result


@pytest.fixture(scope="module")
def trained_env(tmp_path_factory):
    """`trained_world`, shared by the tests of a module."""
    with trained_world(tmp_path_factory.mktemp("trained")) as (world, _):
        yield world


NAME = "fraud_detection"


@dataclass
class CliWorld:
    """A home used through the real `dagster` CLI, as a user would (see test_cli.cli_env)."""

    root: Path
    env: dict

    @property
    def source(self) -> Path:
        return Path(self.env["MLASSETS_HOME"]) / "data" / "transactions.parquet"

    def config(self, name: str, ops: dict) -> str:
        path = self.root / f"{name}.yaml"
        import yaml

        path.write_text(yaml.safe_dump({"ops": ops}))
        return str(path)

    def materialize(self, select: str, config: str | None = None, env: dict | None = None):
        from mlassets_tests.test_cli import DAGSTER

        cmd = [DAGSTER, "asset", "materialize", "-m", "mlassets.definitions", "--select", select]
        return subprocess.run(
            cmd + (["-c", config] if config else []),
            cwd=self.root,
            env=env or self.env,
            capture_output=True,
            text=True,
            timeout=600,
        )

    def client(self):
        from mlflow import MlflowClient

        uri = self.env["MLFLOW_TRACKING_URI"]
        return MlflowClient(uri, uri)

    def registry_state(self) -> tuple[list[str], str | None]:
        from mlassets.ml.registry import PRODUCTION, alias_version

        client = self.client()
        versions = sorted(str(v.version) for v in client.search_model_versions(f"name='{NAME}'"))
        return versions, alias_version(client, NAME, PRODUCTION)


def cli_world_with_version_1(
    root: Path, training: dict | None = None, in_process: bool = True
) -> CliWorld:
    """A CLI home where `dagster asset materialize --select '*'` put version 1 in production.
    Its MLflow store starts as `empty_mlflow_store`; `training` is candidate_model's config,
    by default SERIAL_TRAINING. The tests using it are about what the CLI does afterwards, so by
    default that materialization runs in this process (`materialize_all_in_process`: the same
    definitions, home, instance, value store and store), which saves a cold `dagster` process;
    `in_process=False` runs the real command."""
    from mlassets.synthetic import fraud_frame, write_frame
    from mlassets_tests.test_cli import cli_env

    w = CliWorld(root, cli_env(root, None))
    assert empty_mlflow_store(root / "mlflow.db") == w.env["MLFLOW_TRACKING_URI"]
    write_frame(fraud_frame(TEST_ROWS, seed=7), w.source)
    training = training or SERIAL_TRAINING
    if in_process:
        result = materialize_all_in_process(w.env, {"candidate_model": {"config": training}})
        assert result.success, "version 1's run failed"
    else:
        proc = w.materialize("*", w.config("fast", {"candidate_model": {"config": training}}))
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert w.registry_state() == (["1"], "1")
    return w


@contextlib.contextmanager
def process_env(env: dict) -> Iterator[None]:
    """This process's environment made `env` (a CLI home's, built from it: its homes, store and
    settings), then put back as it was, MLflow's tracking and registry URIs too."""
    saved = dict(os.environ)
    saved_uris = {k: os.environ.get(k) for k in _URI_KEYS}
    os.environ.update(env)
    for key in set(saved) - set(env):
        del os.environ[key]
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        _restore_mlflow_uris(saved_uris)


def materialize_all_in_process(env: dict, ops: dict, selection: list[str] | None = None):
    """What `dagster asset materialize -m mlassets.definitions --select '*'` (or the assets named
    in `selection`) does in the CLI home `env`, in this process: the code location's own
    definitions, built from that environment (resources, value store, MLflow store), run on the
    home's instance (its dagster.yaml). The run's result; never raises on failure."""
    from dagster import AssetKey, DagsterInstance

    with process_env(env):
        from mlassets.definitions import build_defs

        job = build_defs().resolve_implicit_global_asset_job_def()
        instance = DagsterInstance.from_config(env["DAGSTER_HOME"])
        try:
            return job.execute_in_process(
                run_config={"ops": ops},
                instance=instance,
                asset_selection=[AssetKey(a) for a in selection] if selection else None,
                raise_on_error=False,
            )
        finally:
            instance.dispose()
