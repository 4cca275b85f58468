"""The services a run talks to (the MLflow tracking store and registry): which of their failures
are worth retrying, and errors that name the store when it cannot be reached or written.

A step that retries every error wastes minutes on a wrong hyperparameter and can repeat a side
effect for nothing; one that retries none fails a whole training run on one dropped connection.
So the Dagster shell retries a step only when `is_transient` says the error was the service's
passing state (a refused or reset connection, a timeout, HTTP 408/429/5xx, MLflow's
TEMPORARILY_UNAVAILABLE, SQLite's "database is locked") and fails it at once otherwise.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from mlassets.ml.bounded import clip

T = TypeVar("T")

# MLflow error codes that mean "try again later" (HTTP 503, 429, 429, 504). INTERNAL_ERROR is not
# one: any MlflowException without a code gets it, so the error it wraps decides.
TRANSIENT_MLFLOW_CODES = frozenset(
    {"TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED"}
)
# HTTP statuses worth another attempt: MLflow's own list (request_utils' transient codes).
TRANSIENT_HTTP_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# SQLite's messages for a lock another writer holds; every other SQLite OperationalError (a
# read-only or missing file, no such table) stays wrong however often it is retried. MLflow's
# SQL store reports all of them as TEMPORARILY_UNAVAILABLE, so the SQLite error decides.
SQLITE_TRANSIENT = ("database is locked", "database table is locked")
# botocore's connection failures (an object store for artifacts), matched by name: no import.
BOTOCORE_TRANSIENT = frozenset(
    {"EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError"}
)
# Environment variables of MLflow's HTTP client that decide how long an unreachable server takes.
# Seconds each attempt of a run's first request to a store may take (see first_contact).
FIRST_CONTACT_TIMEOUT = 5
HTTP_SETTINGS = (
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
    "MLFLOW_HTTP_REQUEST_TIMEOUT",
)


class ServiceError(RuntimeError):
    """A service cannot be used at all (unreachable, not writable): the message names it and the
    setting to change. Never transient: it is raised once the client's own retries are spent."""


def is_transient(exc: BaseException) -> bool:
    """Whether `exc` is a service's passing failure that another attempt may not meet.

    The error and the errors it wraps are read outermost first; the first one that decides wins,
    so MLflow's "API request failed" (INTERNAL_ERROR) is judged by the refused connection under
    it and its TEMPORARILY_UNAVAILABLE by the SQLite error under it. Anything unknown is permanent.
    """
    said_temporary = False  # an MLflow code said "try again", unless what it wraps says no
    for link in _chain(exc):
        if getattr(link, "error_code", None) in TRANSIENT_MLFLOW_CODES:
            said_temporary = True
            continue
        verdict = _verdict(link)
        if verdict is not None:
            return verdict
    return said_temporary


def _chain(exc: BaseException, limit: int = 20) -> Iterator[BaseException]:
    """`exc`, then what it was raised from or while handling (and SQLAlchemy's `orig`)."""
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen and len(seen) < limit:
        seen.add(id(link))
        yield link
        orig = getattr(link, "orig", None)
        if isinstance(orig, BaseException) and link.__cause__ is None:
            link = orig
        elif link.__cause__ is not None:
            link = link.__cause__
        elif not link.__suppress_context__:
            link = link.__context__
        else:
            link = None


def _loaded(module: str, name: str) -> type | None:
    """`module.name` if the module is already imported: an error of a library never imported
    cannot be in the chain, and judging one must not import it."""
    mod = sys.modules.get(module)
    return getattr(mod, name, None) if mod is not None else None


def _isinstance(e: BaseException, module: str, *names: str) -> bool:
    types = tuple(t for t in (_loaded(module, n) for n in names) if isinstance(t, type))
    return bool(types) and isinstance(e, types)


def _verdict(e: BaseException) -> bool | None:
    """True (transient), False (permanent) or None (a wrapper: what it wraps decides)."""
    sqlite_error = _loaded("sqlite3", "Error")
    if isinstance(sqlite_error, type) and isinstance(e, sqlite_error):
        return any(m in str(e) for m in SQLITE_TRANSIENT)
    if _isinstance(e, "sqlalchemy.exc", "DBAPIError"):
        if isinstance(sqlite_error, type) and isinstance(getattr(e, "orig", None), sqlite_error):
            return None  # the SQLite error under it decides
        # a server database's OperationalError is a dropped or refused connection
        return _isinstance(e, "sqlalchemy.exc", "OperationalError") or bool(
            getattr(e, "connection_invalidated", False)
        )
    if _isinstance(e, "sqlalchemy.exc", "TimeoutError", "DisconnectionError"):
        return True
    if _isinstance(e, "mlflow.exceptions", "MlflowException"):
        return None if e.error_code == "INTERNAL_ERROR" else False
    if _isinstance(e, "requests.exceptions", "HTTPError"):
        response = getattr(e, "response", None)
        return getattr(response, "status_code", None) in TRANSIENT_HTTP_STATUSES
    if _isinstance(
        e, "requests.exceptions", "ConnectionError", "Timeout", "RetryError", "ChunkedEncodingError"
    ):
        return True
    if _isinstance(
        e, "urllib3.exceptions", "MaxRetryError", "NewConnectionError", "ProtocolError"
    ) or _isinstance(e, "urllib3.exceptions", "TimeoutError"):
        return True
    if type(e).__module__.startswith("botocore") and any(
        c.__name__ in BOTOCORE_TRANSIENT for c in type(e).__mro__
    ):
        return True
    return isinstance(e, ConnectionError | TimeoutError)


def innermost(exc: BaseException) -> BaseException:
    """The error at the bottom of `exc`'s chain: the one that says what really happened."""
    last = exc
    for link in _chain(exc):
        last = link
    return last


def _http_settings() -> str:
    from mlflow import environment_variables as ev

    return ", ".join(f"{name}={getattr(ev, name).get()}" for name in HTTP_SETTINGS)


def unreachable(
    uri: str, exc: BaseException, seconds: float, role: str, variable: str
) -> ServiceError:
    """The error for a store that failed transiently at first contact, once MLflow's own retries
    are spent: it names the URI, what happened at the bottom, and the settings to change."""
    cause = innermost(exc)
    return ServiceError(
        clip(
            f"MLflow {role} {uri} is unreachable after {seconds:.0f} s: "
            f"{type(cause).__name__}: {cause}. Start it, or set {variable} to one that runs. "
            f"MLflow's client retried with {_http_settings()} (set these to wait longer); "
            f"each first attempt waited at most {FIRST_CONTACT_TIMEOUT} s."
        )
    )


def failed(uri: str, exc: BaseException, role: str) -> ServiceError:
    """The error for a store that refused the first request for good (a wrong path,
    credentials, a database from another version): the URI first, then what it said."""
    return ServiceError(clip(f"MLflow {role} {uri} failed: {type(exc).__name__}: {exc}"))


def local_store_path(uri: str) -> Path | None:
    """The file or folder a tracking/registry URI keeps its data in on this machine: the database
    of `sqlite:///...`, the folder of a path or `file:` URI; None for a server or `:memory:`."""
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme == "sqlite":
        from sqlalchemy.engine import make_url

        database = make_url(uri).database
        return Path(database) if database and database != ":memory:" else None
    if scheme == "file":
        return Path(unquote(parts.path))
    if len(scheme) <= 1:  # a path (a Windows drive letter is not a scheme)
        return Path(uri)
    return None


def check_local_store(uri: str, hint: str) -> None:
    """Fail now, naming the path, when a local tracking store cannot be written.

    MLflow would otherwise retry creating its engine for two minutes on a read-only folder and
    then raise a bare `sqlite3.OperationalError: unable to open database file` naming nothing.
    Tries what MLflow will do (create the folder, a file in it, open the database for writing)
    rather than reading permission bits, which root, ACLs and read-only mounts make lie.
    """
    path = local_store_path(uri)
    if path is None:
        return
    database = path if uri.lower().startswith("sqlite:") else None
    folder = path.parent if database else path
    try:
        where = f"create the folder {folder}"
        folder.mkdir(parents=True, exist_ok=True)
        where = f"write in the folder {folder}"
        with tempfile.TemporaryFile(dir=folder, prefix=".mlassets-write-check-"):
            pass
        if database is not None and database.exists():
            where = f"write the database {database}"
            with open(database, "r+b"):
                pass
    except OSError as e:
        reason = e.strerror or str(e)
        raise ServiceError(
            clip(f"MLflow tracking store {uri}: cannot {where} ({reason}). {hint}".rstrip())
        ) from e


def first_contact(
    uri: str,
    call: Callable[[], T],
    role: str = "tracking store",
    variable: str = "MLFLOW_TRACKING_URI",
) -> T:
    """`call()` (the first request a run makes to the store), with a failure that names `uri`
    and the `variable` that chose it: an unreachable store once the retries are spent, or
    whatever it refused.

    A server is first asked for its `/health` (`reachable`), each attempt waiting at most
    `FIRST_CONTACT_TIMEOUT` seconds: a host that drops packets (no refusal, only silence) then
    fails in under 30 s too, where the run's own 30 s per request would take two minutes. The
    probe carries its own timeout, so no process-wide setting is changed for it."""
    import time

    start = time.monotonic()
    try:
        if uri.lower().startswith(("http://", "https://")):
            reachable(uri)
        return call()
    except Exception as e:
        if is_transient(e):
            raise unreachable(uri, e, time.monotonic() - start, role, variable) from e
        raise failed(uri, e, role) from e


def reachable(uri: str) -> None:
    """Ask the server at `uri` for `/health` with MLflow's own retry settings (read, never
    written) and at most `FIRST_CONTACT_TIMEOUT` seconds per attempt; any answer, even an
    error status, means it is there. Raises requests' ConnectionError once retries are spent."""
    import requests
    from mlflow import environment_variables as ev
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    retries = ev.MLFLOW_HTTP_REQUEST_MAX_RETRIES.get()
    retry = Retry(
        total=retries,
        connect=retries,
        read=retries,
        status=0,
        backoff_factor=ev.MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR.get(),
        raise_on_status=False,
    )
    timeout = min(float(ev.MLFLOW_HTTP_REQUEST_TIMEOUT.get()), FIRST_CONTACT_TIMEOUT)
    with requests.Session() as session:
        session.mount(uri, HTTPAdapter(max_retries=retry))
        # the TLS settings MLflow's own client honours, so a private CA or an insecure test
        # server is reached as the run will reach it (given per request: they win over
        # REQUESTS_CA_BUNDLE, as in MLflow's client)
        verify = (
            False
            if ev.MLFLOW_TRACKING_INSECURE_TLS.get()
            else ev.MLFLOW_TRACKING_SERVER_CERT_PATH.get() or True
        )
        cert = ev.MLFLOW_TRACKING_CLIENT_CERT_PATH.get() or None
        session.get(f"{uri.rstrip('/')}/health", timeout=timeout, verify=verify, cert=cert).close()
