"""Retries: a step that talks to MLflow retries a service's passing failure and nothing else.

The classification (`mlassets.ml.services.is_transient`) is judged on errors that real MLflow
clients, real SQLite stores, a real HTTP server and real sklearn raise; the retry itself by the
code location's own definitions on a CLI home (its instance, value store and MLflow store), run
in process as `dagster asset materialize` runs them (the in-process executor), with one injected
transient fault (`MLASSETS_TRANSIENT_FAULT`) and one real permanent error.
"""

import os
import socket
import sqlite3
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mlassets_tests.conftest import (
    NAME,
    SERIAL_TRAINING,
    TEST_ROWS,
    CliWorld,
    empty_mlflow_store,
    materialize_all_in_process,
)

pytestmark = pytest.mark.unit


def free_port() -> int:
    """A port with nothing listening on it (bound, read and closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raised(call) -> BaseException:
    try:
        call()
    except Exception as e:  # the error under test
        return e
    raise AssertionError("expected an error")


# --- what is transient ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """A real MLflow SQLite database with its tables (creating them takes seconds: once)."""
    db = tmp_path_factory.mktemp("store") / "mlflow.db"
    empty_mlflow_store(db)
    return db


@pytest.mark.unit
def test_a_refused_connection_to_a_tracking_server_is_transient(monkeypatch):
    from mlflow import MlflowClient

    from mlassets.ml.services import innermost, is_transient

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # MLflow's own retries: none
    uri = f"http://127.0.0.1:{free_port()}"
    e = raised(lambda: MlflowClient(uri).get_experiment_by_name("x"))
    assert getattr(e, "error_code", None) == "INTERNAL_ERROR"  # MLflow's wrapper says nothing
    assert is_transient(e)
    assert isinstance(innermost(e), ConnectionRefusedError)


@pytest.mark.integration  # a real SQLite lock held for seconds
def test_a_locked_sqlite_store_is_transient_a_read_only_one_is_not(store):
    from mlflow import MlflowClient

    from mlassets.ml.services import is_transient

    db = store
    holder = sqlite3.connect(db, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")  # another writer holds the database
        # a second process opening the store meanwhile (no busy timeout: MLflow's own sessions
        # wait 20 s for a lock, too long for a unit test)
        locked = raised(lambda: MlflowClient(f"sqlite:///{db}?timeout=0").search_experiments())
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert "database is locked" in str(locked)
    assert is_transient(locked)

    read_only = MlflowClient(f"sqlite:///file:{db}?mode=ro&uri=true")
    refused = raised(lambda: read_only.create_experiment("read-only"))
    assert "readonly database" in str(refused)
    # MLflow calls it TEMPORARILY_UNAVAILABLE too; retrying cannot make the file writable
    assert refused.error_code == "TEMPORARILY_UNAVAILABLE"
    assert not is_transient(refused)


@pytest.mark.integration  # a real SQLite lock
def test_a_locked_store_is_never_read_as_a_missing_version(store):
    """The registry's lookups turn "no such version" into a RegistryError verdict; a store
    another writer holds says nothing of the version, so its error passes through unwrapped
    and stays transient (it used to read as "model x has no version '1'")."""
    from mlflow import MlflowClient

    from mlassets.ml.registry import RegistryError, load_reference, load_verified_model
    from mlassets.ml.services import is_transient

    client = MlflowClient(f"sqlite:///{store}?timeout=0")
    holder = sqlite3.connect(store, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        loading = raised(lambda: load_verified_model(client, "fraud_detection", "1"))
        reference = raised(lambda: load_reference(client, "fraud_detection", version="1"))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    for e in (loading, reference):
        assert not isinstance(e, RegistryError) and is_transient(e), repr(e)
        assert "database is locked" in str(e)
    # unlocked, the same lookups are the registry's verdict
    assert isinstance(raised(lambda: load_verified_model(client, "absent", "1")), RegistryError)


@pytest.mark.unit
def test_missing_resources_bad_parameters_and_our_refusals_are_permanent(store):
    import numpy as np
    from mlflow import MlflowClient
    from sklearn.ensemble import RandomForestClassifier

    from mlassets.ml.data import DataError
    from mlassets.ml.provenance import ProvenanceError
    from mlassets.ml.registry import RegistryError
    from mlassets.ml.services import is_transient

    client = MlflowClient(f"sqlite:///{store}")
    missing = raised(lambda: client.get_registered_model("nope"))
    assert missing.error_code == "RESOURCE_DOES_NOT_EXIST"
    invalid = raised(lambda: client.create_experiment(""))
    assert invalid.error_code == "INVALID_PARAMETER_VALUE"
    X, y = np.arange(20.0).reshape(10, 2), np.array([0, 1] * 5)
    sklearn_error = raised(lambda: RandomForestClassifier(max_depth=-1).fit(X, y))
    assert isinstance(sklearn_error, ValueError)
    permanent = [
        missing,
        invalid,
        sklearn_error,
        RegistryError("no previous version"),
        ProvenanceError("not registering"),
        DataError("x.csv: file not found"),
        PermissionError(13, "Permission denied", "/x"),
    ]
    assert [e for e in permanent if is_transient(e)] == []


@pytest.mark.unit
def test_connection_errors_and_timeouts_are_transient_but_not_when_rewrapped():
    from mlassets.ml.services import is_transient

    assert is_transient(ConnectionResetError(104, "Connection reset by peer"))
    assert is_transient(TimeoutError("timed out"))
    try:
        try:
            raise ConnectionResetError(104, "reset")
        except ConnectionResetError as e:
            raise ValueError("the caller decided this is bad input") from e
    except ValueError as e:
        assert not is_transient(e)  # the outermost error that decides wins


class _Status(BaseHTTPRequestHandler):
    """Answers every request with the status its path names: /503/..., /429/..., /404/..."""

    def do_GET(self):
        status = int(self.path.split("/")[1])
        body = b'{"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no such model"}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # keep the test output quiet
        pass


@pytest.mark.services
@pytest.mark.e2e
def test_http_429_and_5xx_are_transient_4xx_is_not(monkeypatch):
    from mlflow import MlflowClient

    from mlassets.ml.services import is_transient

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Status)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        verdicts = {
            status: is_transient(
                raised(lambda s=status: MlflowClient(f"{base}/{s}").get_registered_model("m"))
            )
            for status in (429, 500, 503, 404)
        }
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    assert verdicts == {429: True, 500: True, 503: True, 404: False}


# --- the shell: what reaches the retry policy ----------------------------------------------------


@pytest.mark.unit
def test_only_transient_errors_reach_the_retry_policy():
    from dagster import DagsterInvariantViolationError, Failure

    from mlassets.assets.refusals import as_failure, retry_if_transient
    from mlassets.ml.registry import RegistryError

    with pytest.raises(ConnectionResetError), retry_if_transient():  # the policy retries it
        raise ConnectionResetError(104, "reset")
    with pytest.raises(Failure) as bad_input, retry_if_transient():
        raise ValueError("Input X contains infinity")
    assert bad_input.value.allow_retries is False
    assert bad_input.value.description == "ValueError: Input X contains infinity"
    assert isinstance(bad_input.value.__cause__, ValueError)  # the traceback is kept
    with pytest.raises(Failure) as refusal, retry_if_transient(), as_failure():
        raise RegistryError("no `previous` version to roll back to")
    assert refusal.value.allow_retries is False
    assert refusal.value.description == "no `previous` version to roll back to"  # unchanged
    # Dagster's own errors pass untouched: a policy never retries them anyway
    with pytest.raises(DagsterInvariantViolationError), retry_if_transient():
        raise DagsterInvariantViolationError("bad definition")


@pytest.mark.unit
def test_the_transient_fault_fires_once_and_only_where_named(tmp_path, monkeypatch):
    from mlflow.exceptions import MlflowException

    from mlassets.ml.faults import transient_fault
    from mlassets.ml.services import is_transient

    monkeypatch.setenv("MLASSETS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLASSETS_TRANSIENT_FAULT", raising=False)
    transient_fault("registered_model")  # off unless set
    monkeypatch.setenv("MLASSETS_TRANSIENT_FAULT", "registered_model, staging_model")
    transient_fault("candidate_model")  # not named
    with pytest.raises(MlflowException) as fault:
        transient_fault("registered_model")
    assert fault.value.error_code == "TEMPORARILY_UNAVAILABLE"
    assert is_transient(fault.value)
    transient_fault("registered_model")  # the retry passes
    assert (tmp_path / "home" / "faults" / "registered_model.fired").is_file()
    with pytest.raises(MlflowException):
        transient_fault("staging_model")


@pytest.mark.unit
def test_mlflow_http_defaults_are_ours_unless_the_user_sets_them(tmp_path):
    from mlflow import environment_variables

    from mlassets.settings import MLFLOW_HTTP_DEFAULTS

    names = sorted(MLFLOW_HTTP_DEFAULTS)
    # MLflow's own variables, which it reads at each request
    assert all(getattr(environment_variables, n).name == n for n in names)
    code = f"import os, mlassets.settings; print([os.environ[n] for n in {names!r}])"
    env = {k: v for k, v in os.environ.items() if k not in MLFLOW_HTTP_DEFAULTS}

    def seen(**user: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-c", code],
            env={**env, **user},
            capture_output=True,
            text=True,
            cwd=tmp_path,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout.strip()

    ours = [MLFLOW_HTTP_DEFAULTS[n] for n in names]
    assert seen() == str(ours)
    theirs = [
        "5" if n == "MLFLOW_HTTP_REQUEST_MAX_RETRIES" else MLFLOW_HTTP_DEFAULTS[n] for n in names
    ]
    assert seen(MLFLOW_HTTP_REQUEST_MAX_RETRIES="5") == str(theirs)
    assert int(MLFLOW_HTTP_DEFAULTS["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]) < int(
        environment_variables.MLFLOW_HTTP_REQUEST_MAX_RETRIES.default
    )


# --- retries of a real run -----------------------------------------------------------------------


def run_events(world: CliWorld, run_id: str) -> list:
    """The Dagster events of one run, read back from the home's instance."""
    from dagster import DagsterInstance

    with DagsterInstance.from_config(world.env["DAGSTER_HOME"]) as instance:
        return [e.dagster_event for e in instance.all_logs(run_id) if e.dagster_event]


def last_run_id(world: CliWorld) -> str:
    from dagster import DagsterInstance

    with DagsterInstance.from_config(world.env["DAGSTER_HOME"]) as instance:
        return instance.get_runs(limit=1)[0].run_id


def step_events(events: list, step: str) -> list[str]:
    return [e.event_type_value for e in events if e.step_key == step]


def error_messages(error) -> list[str]:
    """An event's error and its causes, outermost first (what the CLI prints of it)."""
    found = []
    while error is not None:
        found.append(f"{error.cls_name}: {error.message}")
        error = error.cause
    return found


@pytest.fixture(scope="module")
def faulted(tmp_path_factory):
    """A CLI home whose first `--select '*'` met one transient fault in `registered_model`: the
    home and that run's result."""
    from mlassets.synthetic import fraud_frame, write_frame
    from mlassets_tests.test_cli import cli_env

    root = tmp_path_factory.mktemp("retries")
    world = CliWorld(root, cli_env(root, None))
    assert empty_mlflow_store(root / "mlflow.db") == world.env["MLFLOW_TRACKING_URI"]
    write_frame(fraud_frame(TEST_ROWS, seed=7), world.source)
    env = {**world.env, "MLASSETS_TRANSIENT_FAULT": "registered_model"}
    result = materialize_all_in_process(env, {"candidate_model": {"config": SERIAL_TRAINING}})
    return world, result


@pytest.mark.integration
def test_a_transient_failure_is_retried_and_the_run_succeeds(faulted):
    world, result = faulted
    assert result.success
    marker = Path(world.env["MLASSETS_HOME"]) / "faults" / "registered_model.fired"
    assert marker.is_file()  # the fault did fire
    assert result.run_id == last_run_id(world)  # the run is the home's, stored in its instance
    events = run_events(world, result.run_id)
    # attempt 1 fails and asks for a retry, attempt 2 ("STEP_RESTARTED") succeeds
    retries = [e for e in events if e.step_key == "registered_model" and e.is_step_up_for_retry]
    assert len(retries) == 1
    said = error_messages(retries[0].event_specific_data.error)
    assert any("injected transient fault at registered_model" in m for m in said), said
    steps = step_events(events, "registered_model")
    assert steps.count("STEP_START") == 1
    assert steps.count("STEP_UP_FOR_RETRY") == 1
    assert steps.count("STEP_RESTARTED") == 1
    assert steps[-1] == "STEP_SUCCESS"
    assert "STEP_FAILURE" not in steps
    # the version exists, was promoted, and the run's MLflow run was resumed and closed
    assert world.registry_state() == (["1"], "1")
    client = world.client()
    version = client.get_model_version(NAME, "1")
    assert client.get_run(version.run_id).info.status == "FINISHED"


@pytest.mark.integration
def test_a_permanent_error_is_not_retried(faulted):
    world, _ = faulted
    before = world.registry_state()
    bad = {"candidate_model": {"config": {"strategy": "fixed", "params": {"max_depth": -1}}}}
    result = materialize_all_in_process(world.env, bad, selection=["candidate_model"])
    assert not result.success
    assert result.run_id == last_run_id(world)
    events = run_events(world, result.run_id)
    (failure,) = [e for e in events if e.step_key == "candidate_model" and e.is_step_failure]
    said = "\n".join(error_messages(failure.step_failure_data.error))
    assert "max_depth" in said and "Got -1 instead" in said  # sklearn's message, kept
    steps = step_events(events, "candidate_model")
    assert steps.count("STEP_START") == 1
    assert "STEP_UP_FOR_RETRY" not in steps
    assert steps[-1] == "STEP_FAILURE"
    assert world.registry_state() == before
