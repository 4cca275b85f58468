"""Services through the real `dagster` CLI: a tracking server that is down, a home that cannot be
written or does not exist. Each fails in seconds, naming what to fix (before: 252 s of silent
retries for the server, 121 s and a bare `sqlite3.OperationalError` for a read-only home).
"""

import os
import shutil
import subprocess
import time
import warnings
from pathlib import Path

import pytest

from mlassets.settings import MLFLOW_HTTP_DEFAULTS
from mlassets_tests.test_cli import DAGSTER, cli_env
from mlassets_tests.test_retries import free_port

pytestmark = pytest.mark.e2e

# What "fails fast" means here, startup of the CLI included (it was 252 s for the server).
FAST_S = 30
# Root ignores permission bits; without these capabilities it obeys them like anyone else.
DROP_ROOT = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner"]


def materialize(root: Path, env: dict, select: str, prefix: list[str] | None = None):
    """`dagster asset materialize` as a user runs it: (the process, seconds it took)."""
    start = time.monotonic()
    proc = subprocess.run(
        [*(prefix or []), DAGSTER, "asset", "materialize", "-m", "mlassets.definitions"]
        + ["--select", select],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return proc, time.monotonic() - start


def own_defaults(env: dict) -> dict:
    """`env` without the MLflow HTTP settings, so the code location's own defaults apply."""
    return {k: v for k, v in env.items() if k not in MLFLOW_HTTP_DEFAULTS}


def read_only_prefix(tmp_path: Path) -> list[str] | None:
    """How to run a command that a 0o555 folder stops: nothing for a regular user; for root,
    `setpriv` dropping the capabilities that bypass permissions; None if root cannot drop them."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        return None
    probe = tmp_path / "probe"
    probe.mkdir()
    probe.chmod(0o555)
    try:
        subprocess.run([*DROP_ROOT, "touch", str(probe / "x")], capture_output=True, timeout=30)
        return None if (probe / "x").exists() else DROP_ROOT
    finally:
        probe.chmod(0o755)


def test_an_unreachable_tracking_server_fails_fast_naming_it(tmp_path):
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    env = {**own_defaults(cli_env(tmp_path, None)), "MLFLOW_TRACKING_URI": uri}
    proc, seconds = materialize(tmp_path, env, "candidate_model")
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert seconds < FAST_S, f"took {seconds:.0f} s"
    assert f"{uri} is unreachable" in output  # the tracking store or the registry on it
    assert "ConnectionRefusedError" in output
    # the settings that decided how long it tried, with the project's values
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES=3" in output
    assert "MLFLOW_HTTP_REQUEST_TIMEOUT=30" in output  # a run's requests: unchanged
    assert "each first attempt waited at most 5 s" in output  # FIRST_CONTACT_TIMEOUT


@pytest.mark.parametrize("what", ["home", "database"])
def test_a_read_only_home_names_the_path(tmp_path, what):
    """The MLflow store under MLASSETS_HOME (the default) cannot be written: a read-only home
    folder, or a database file in it that is read-only."""
    home = tmp_path / "mlassets_home"
    home.mkdir()
    target = home if what == "home" else home / "mlflow.db"
    env = cli_env(tmp_path, None)
    env["MLASSETS_HOME"] = str(home)
    env.pop("MLFLOW_TRACKING_URI")  # the default: <MLASSETS_HOME>/mlflow.db
    prefix = read_only_prefix(tmp_path)
    if prefix is None:  # root that cannot drop its privileges: a home under a regular file
        warnings.warn(
            "running as root without setpriv: testing a home under a regular file", stacklevel=1
        )
        (tmp_path / "a_file").write_text("")
        home = tmp_path / "a_file" / "mlassets_home"
        env["MLASSETS_HOME"] = str(home)
        target, prefix, expected = home, [], f"cannot create the folder {home}"
    elif what == "home":
        expected = f"cannot write in the folder {home}"
    else:
        target.touch()
        expected = f"cannot write the database {target}"
    target.chmod(0o555)
    try:
        proc, seconds = materialize(tmp_path, env, "candidate_model", prefix)
    finally:
        if target.exists():
            target.chmod(0o755)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert seconds < FAST_S, f"took {seconds:.0f} s"
    assert expected in output, output[-3000:]
    assert "Set MLASSETS_HOME to a writable folder" in output
    assert "OperationalError" not in output  # MLflow never got to open it


def test_a_home_under_a_regular_file_names_the_path(tmp_path):
    (tmp_path / "a_file").write_text("")
    home = tmp_path / "a_file" / "mlassets_home"
    env = cli_env(tmp_path, None)
    env["MLASSETS_HOME"] = str(home)
    env.pop("MLFLOW_TRACKING_URI")
    proc, seconds = materialize(tmp_path, env, "candidate_model")
    assert proc.returncode != 0
    assert seconds < FAST_S
    assert f"cannot create the folder {home} (Not a directory)" in proc.stdout + proc.stderr


def test_dagster_names_a_missing_or_read_only_dagster_home(tmp_path):
    """Dagster opens its instance before it loads the code location, so what it says is what a
    user reads: it names the folder (a missing one) or the file it could not create."""
    missing = tmp_path / "no_such_dagster_home"
    env = {**cli_env(tmp_path, None), "DAGSTER_HOME": str(missing)}
    proc, _ = materialize(tmp_path, env, "raw_data")
    assert proc.returncode != 0
    assert f'$DAGSTER_HOME "{missing}" is not a directory or does not exist' in proc.stderr

    prefix = read_only_prefix(tmp_path)
    if prefix is None:
        warnings.warn(
            "running as root without setpriv: the read-only DAGSTER_HOME is not tested",
            stacklevel=1,
        )
        return
    read_only = tmp_path / "read_only_dagster_home"
    read_only.mkdir()
    read_only.chmod(0o555)
    try:
        env["DAGSTER_HOME"] = str(read_only)
        proc, _ = materialize(tmp_path, env, "raw_data", prefix)
    finally:
        read_only.chmod(0o755)
    assert proc.returncode != 0
    assert "PermissionError" in proc.stderr and str(read_only) in proc.stderr


@pytest.mark.integration
def test_a_silent_server_fails_the_first_contact_within_its_own_timeout(monkeypatch):
    """A host that accepts the connection and never answers (dropped packets, a hung proxy):
    each attempt of the run's first request waits at most FIRST_CONTACT_TIMEOUT, not the 30 s a
    run's requests may take, and the error names the URI."""
    import socket

    from mlflow import MlflowClient

    from mlassets.ml.services import FIRST_CONTACT_TIMEOUT, ServiceError, first_contact

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # one attempt: time the cap
    before = os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT")
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel completes the handshake; nobody ever reads or answers
        uri = f"http://127.0.0.1:{silent.getsockname()[1]}"
        start = time.monotonic()
        with pytest.raises(ServiceError) as failure:
            first_contact(uri, lambda: MlflowClient(uri).search_experiments(max_results=1))
        took = time.monotonic() - start
    assert FIRST_CONTACT_TIMEOUT - 1 <= took < FIRST_CONTACT_TIMEOUT + 5
    assert uri in str(failure.value) and "unreachable" in str(failure.value)
    assert os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT") == before  # never changed


@pytest.mark.integration
def test_the_first_contact_honours_mlflows_tls_settings(tmp_path, monkeypatch):
    """A server behind a private CA: the first contact's probe trusts what MLflow's client is
    told to trust (MLFLOW_TRACKING_SERVER_CERT_PATH, or MLFLOW_TRACKING_INSECURE_TLS), and
    refuses an unknown certificate as MLflow would."""
    import http.server
    import ssl
    import threading

    from mlassets.ml.services import reachable
    from mlassets_tests.test_alerts import _certificate

    cert, key = _certificate(tmp_path)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    uri = f"https://127.0.0.1:{server.server_port}"
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    try:
        with pytest.raises(Exception, match="CERTIFICATE_VERIFY_FAILED"):
            reachable(uri)
        monkeypatch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", str(cert))
        reachable(uri)  # an answer (501 to GET /health) is enough
        monkeypatch.delenv("MLFLOW_TRACKING_SERVER_CERT_PATH")
        monkeypatch.setenv("MLFLOW_TRACKING_INSECURE_TLS", "true")
        reachable(uri)
    finally:
        server.shutdown()
        server.server_close()
