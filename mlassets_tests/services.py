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


# --- a browser: Debian's Chromium, driven through Debian's own chromedriver ---------------------
# `make browser` installs both (apt-get: chromium-driver is built from the same source as
# chromium, so the two always match). No test tool downloads a browser: the driver's path is
# given, so Selenium never runs its Selenium Manager (which would fetch a driver and a browser),
# and SE_OFFLINE forbids it to all the same.
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def require_chromium() -> None:
    absent = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if absent:
        missing(
            f"Debian's Chromium ({', '.join(absent)} not installed)",
            "run `make browser` (apt-get install chromium chromium-driver)",
        )


@contextlib.contextmanager
def chromium(log: Path, width: int = 1280, height: int = 800) -> Iterator:
    """A headless Chromium (a Selenium WebDriver) whose viewport is `width` x `height`;
    chromedriver writes to `log`; quit (browser and driver) however the block ends."""
    require_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        f"--window-size={width},{height}",
        "--force-device-scale-factor=1",
        "--hide-scrollbars",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--lang=en-US",
    ):
        options.add_argument(arg)
    if os.geteuid() == 0:  # CI runs as root, where Chromium's sandbox refuses to start
        options.add_argument("--no-sandbox")
    service = Service(executable_path=str(CHROMEDRIVER), log_output=str(log))
    saved = os.environ.get("SE_OFFLINE")
    os.environ["SE_OFFLINE"] = "true"  # read by Selenium Manager, were it ever to run
    try:
        driver = webdriver.Chrome(options=options, service=service)
    finally:
        if saved is None:
            os.environ.pop("SE_OFFLINE", None)
        else:
            os.environ["SE_OFFLINE"] = saved
    try:
        # the viewport itself (--window-size sizes the window: the page got 1280 x 657)
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        yield driver
    finally:
        driver.quit()


def page_text(driver) -> str:
    """What the page renders as text (`innerText`: hidden elements left out)."""
    return driver.execute_script("return document.body ? document.body.innerText : ''")


def wait_for_text(driver, texts: list[str], timeout: float = 60.0) -> str:
    """Until the rendered text holds every one of `texts`; that text. Fails naming the ones
    still missing, with the page's URL and the start of its text."""
    deadline = time.monotonic() + timeout
    while True:
        text = page_text(driver)
        absent = [t for t in texts if t not in text]
        if not absent:
            return text
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{driver.current_url} does not show {absent} after {timeout:.0f} s; "
                f"it shows:\n{text[:3000]}"
            )
        time.sleep(0.25)


def wait_until_still(driver, text: str, timeout: float = 30.0) -> None:
    """Until the element showing exactly `text` has kept its place and size for three looks in
    a row (a graph that zooms to fit animates after its text is there): a screenshot then shows
    the settled page."""
    script = """
        const it = document.evaluate(`//*[normalize-space(text())='${arguments[0]}']`, document,
            null, XPathResult.FIRST_ORDERED_NODE_TYPE, null).singleNodeValue;
        if (!it) return null;
        const r = it.getBoundingClientRect();
        return [r.x, r.y, r.width, r.height].map((v) => Math.round(v)).join(',');"""
    deadline, seen = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        seen = (seen + [driver.execute_script(script, text)])[-3:]
        if len(seen) == 3 and seen[0] is not None and len(set(seen)) == 1:
            return
        time.sleep(0.2)
    raise AssertionError(f"{text!r} still moves on {driver.current_url} after {timeout:.0f} s")


def save_screenshot(driver, path: Path, colors: int = 128) -> Path:
    """The viewport as a PNG at `path`, reduced to a palette of `colors` (Pillow): a UI page of
    flat colours stays sharp and weighs tens of KB instead of hundreds."""
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    small = image.quantize(colors=colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    small.save(path, optimize=True)
    return path
