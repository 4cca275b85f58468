"""Real services for the scale-out tests: PostgreSQL, RabbitMQ, and servers the tests start.

On a user's machine a test whose service is missing skips with a reason that says how to run it;
`.ci/run` sets `MLASSETS_REQUIRE_SERVICES=1`, which turns those skips into failures so CI can never
go green by not testing.
"""

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

HOST = "127.0.0.1"
REQUIRE_ENV = "MLASSETS_REQUIRE_SERVICES"
PG_HOST = os.environ.get("MLASSETS_TEST_PG_HOST", HOST)
PG_PORT = int(os.environ.get("MLASSETS_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("MLASSETS_TEST_PG_USER", os.environ.get("USER", "root"))
PG_ADMIN_DB = os.environ.get("MLASSETS_TEST_PG_DB", "test")
AMQP_PORT = int(os.environ.get("MLASSETS_TEST_AMQP_PORT", "5672"))


def required() -> bool:
    return os.environ.get(REQUIRE_ENV, "") not in ("", "0", "false")


def missing(what: str, how: str) -> None:
    """Skip (a user's machine) or fail (CI, `MLASSETS_REQUIRE_SERVICES=1`): `what` is missing."""
    message = f"{what} is not available; {how}"
    if required():
        pytest.fail(f"{message} ({REQUIRE_ENV} is set, so this is a failure, not a skip)")
    pytest.skip(message)


def port_open(port: int, host: str = HOST, timeout: float = 1.0) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def pg_url(database: str, scheme: str = "postgresql+psycopg2") -> str:
    """A SQLAlchemy URL for `database` on the test server (psycopg2: SQLAlchemy 2.1 maps a bare
    `postgresql://` to psycopg 3, which is not installed)."""
    return f"{scheme}://{PG_USER}@{PG_HOST}:{PG_PORT}/{database}"


def _pg_admin():
    import psycopg2

    conn = psycopg2.connect(
        host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=PG_ADMIN_DB, connect_timeout=5
    )
    conn.autocommit = True
    return conn


def require_postgres() -> None:
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        missing("psycopg2", "install the project with `make install` (extra `.[postgres]`)")
    try:
        _pg_admin().close()
    except Exception as e:
        missing(
            f"PostgreSQL at {PG_HOST}:{PG_PORT} (database {PG_ADMIN_DB!r}, user {PG_USER!r}: {e})",
            "start PostgreSQL or point MLASSETS_TEST_PG_HOST/PORT/USER/DB at one",
        )


@contextlib.contextmanager
def pg_database(prefix: str = "mlassets_test") -> Iterator[str]:
    """A new, empty PostgreSQL database for one test; dropped afterwards (connections too)."""
    require_postgres()
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with contextlib.closing(_pg_admin()) as conn, conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with contextlib.closing(_pg_admin()) as conn, conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def require_rabbitmq() -> None:
    if not port_open(AMQP_PORT):
        missing(
            f"RabbitMQ at {HOST}:{AMQP_PORT}",
            "start it (`rabbitmq-server -detached`) or set MLASSETS_TEST_AMQP_PORT",
        )


def log_tail(log: Path, chars: int = 4000) -> str:
    return log.read_text(errors="replace")[-chars:] if log.exists() else "(no log)"


def wait_http(proc: subprocess.Popen, url: str, log: Path, timeout: float = 120.0) -> None:
    """Until `url` answers 2xx; fails with the process's log if it exits or never answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{proc.args[0]} exited with {proc.returncode}:\n{log_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if 200 <= r.status < 300:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    pytest.fail(f"{url} did not answer within {timeout:.0f}s:\n{log_tail(log)}")


def wait_port(proc: subprocess.Popen, port: int, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{proc.args[0]} exited with {proc.returncode}:\n{log_tail(log)}")
        if port_open(port):
            return
        time.sleep(0.25)
    pytest.fail(f"nothing listens on {HOST}:{port} after {timeout:.0f}s:\n{log_tail(log)}")


def start(cmd: list[str], log: Path, env: dict | None = None, cwd: Path | None = None):
    """Start a server in its own session (so `stop` reaches its children), output to `log`."""
    with log.open("ab") as out:
        return subprocess.Popen(
            cmd,
            cwd=cwd or log.parent,
            env=env or os.environ.copy(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(proc: subprocess.Popen, grace: float = 15.0) -> None:
    """SIGTERM the server's whole session, then SIGKILL what is left: nothing outlives a test."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


@contextlib.contextmanager
def running(cmd: list[str], log: Path, env: dict | None = None, cwd: Path | None = None):
    proc = start(cmd, log, env=env, cwd=cwd)
    try:
        yield proc
    finally:
        stop(proc)
