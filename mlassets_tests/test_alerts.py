"""Failure alerts, end to end: real failed training runs in a real Dagster instance, the alert
sensors evaluated the way the daemon evaluates them (`evaluate_tick` with the instance and the
sensor's cursor), a real SMTP server (aiosmtpd, TLS with a certificate made here, a login) and a
real HTTP receiver on 127.0.0.1; the messages are read back from both.

No PostgreSQL or RabbitMQ: the servers are in-process threads, started and stopped by each test.
"""

import contextlib
import datetime
import email
import html
import json
import re
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.header import decode_header, make_header
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mlassets_tests.conftest import FAST_TRAINING, make_env, run_config

pytestmark = pytest.mark.unit

PASSWORD = "s3cret-for-tests"
SENDER = "mlassets@example.test"
RECIPIENTS = ("oncall@example.test", "ml-team@example.test")
LONG = 50_000  # characters of user text in the failed step's message


@dataclass
class Failed:
    """Two failed training runs in one instance, and the cursor a sensor had before them."""

    world: object
    cursor: str
    gate_run: object  # refused by the f1 gate (a blocking check)
    step_run: object  # candidate_model raised, with a very long message


def _tick(sensor, instance, cursor: str | None):
    """One sensor tick as the daemon runs it: the instance, the stored cursor."""
    from dagster import build_sensor_context

    with build_sensor_context(instance=instance, cursor=cursor) as context:
        return sensor.evaluate_tick(context)


@pytest.fixture(scope="module")
def failed(tmp_path_factory) -> Iterator[Failed]:
    from dagster import instance_for_test

    from mlassets.alerts import AlertSettings, webhook_on_failure

    root = tmp_path_factory.mktemp("alerts")
    (root / "dagster_home").mkdir()
    with instance_for_test(temp_dir=str(root / "dagster_home")) as instance:
        world = make_env(root, instance, rows=2000)
        # a run-failure sensor's first tick only sets its cursor (to the newest event), so the
        # daemon alerts only on failures after the sensor started: take that cursor first
        first = _tick(
            webhook_on_failure(AlertSettings(webhook_url="http://x.test")), instance, None
        )
        assert first.cursor and "Initiating" in (first.skip_message or "")
        gate_run = world.run(config=run_config(gates={"min_f1": 1.01}))
        # a step that fails with a long message of the user's text: an estimator parameter
        # (a choice outside the settings' Literals is refused before the run starts)
        bad = {**FAST_TRAINING, "strategy": "fixed", "params": {"z" * LONG: 1}}
        step_run = world.run(config=run_config(bad))
        assert not gate_run.success and not step_run.success
        yield Failed(world, first.cursor, gate_run, step_run)


# -- the servers -------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1: the client verifies it as it would a real one
    (Dagster's helper uses `ssl.create_default_context()`), trusting it via `SSL_CERT_FILE`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "smtp-cert.pem", folder / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@dataclass
class Mailbox:
    port: int
    messages: list = field(default_factory=list)  # (envelope sender, recipients, email.Message)
    logins: list = field(default_factory=list)

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 (aiosmtpd's name)
        message = email.message_from_bytes(envelope.content)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 OK"


@contextlib.contextmanager
def smtp_server(folder: Path, tls: str, monkeypatch) -> Iterator[Mailbox]:
    """aiosmtpd on 127.0.0.1 speaking `tls` (starttls or ssl), requiring a login over TLS."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    cert, key = _certificate(folder)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the client trusts this certificate only
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    box = Mailbox(_free_port())

    def authenticate(server, session, envelope, mechanism, auth_data) -> AuthResult:
        box.logins.append(auth_data.login.decode())
        return AuthResult(success=auth_data.password.decode() == PASSWORD)

    if tls == "starttls":
        kwargs = {"tls_context": context, "require_starttls": True, "auth_require_tls": True}
    else:
        # the whole connection is TLS; aiosmtpd only counts STARTTLS as TLS for AUTH
        kwargs = {"ssl_context": context, "auth_require_tls": False}
    controller = Controller(
        box, hostname="127.0.0.1", port=box.port, authenticator=authenticate, **kwargs
    )
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


@dataclass
class Receiver:
    url: str
    posts: list = field(default_factory=list)  # (path, content type, parsed JSON)


@contextlib.contextmanager
def http_receiver() -> Iterator[Receiver]:
    """A webhook receiver on 127.0.0.1: records each POST; `/down` answers 503."""
    posts: list = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            posts.append((self.path, self.headers["Content-Type"], json.loads(body)))
            self.send_response(503 if self.path == "/down" else 204)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Receiver(f"http://127.0.0.1:{server.server_address[1]}", posts)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


# -- the tests ---------------------------------------------------------------------------------


def _settings(box: Mailbox | None, tls: str = "starttls", webhook: str | None = None):
    from mlassets.alerts import alert_settings

    env = {"MLASSETS_ALERT_UI_URL": "http://127.0.0.1:3000/"}
    if box is not None:
        env |= {
            "MLASSETS_ALERT_SMTP_HOST": "127.0.0.1",
            "MLASSETS_ALERT_SMTP_PORT": str(box.port),
            "MLASSETS_ALERT_SMTP_TLS": tls,
            "MLASSETS_ALERT_SMTP_FROM": SENDER,
            "MLASSETS_ALERT_SMTP_TO": ", ".join(RECIPIENTS),
            "MLASSETS_ALERT_SMTP_PASSWORD": PASSWORD,
        }
    if webhook:
        env["MLASSETS_ALERT_WEBHOOK_URL"] = webhook
    return alert_settings(env)


def _text(message) -> str:
    """A received email's subject and body as plain text (HTML and RFC 2047 undone)."""
    subject = str(make_header(decode_header(message["Subject"])))
    body = message.get_payload().replace("<br>\n", "\n").replace("<wbr\n>", "")
    body = html.unescape(re.sub(r"<[^>]*>", "", body))
    return f"{subject}\n{body}"


@pytest.mark.integration
@pytest.mark.parametrize("tls", ["starttls", "ssl"])
def test_failed_runs_are_emailed_and_posted(failed, tmp_path, monkeypatch, tls):
    from mlassets.alerts import EMAIL_SENSOR, WEBHOOK_SENSOR, email_on_failure, webhook_on_failure

    instance = failed.world.instance
    with smtp_server(tmp_path, tls, monkeypatch) as box, http_receiver() as hook:
        settings = _settings(box, tls, webhook=f"{hook.url}/hooks/mlassets")
        email_sensor, webhook_sensor = email_on_failure(settings), webhook_on_failure(settings)
        assert (email_sensor.name, webhook_sensor.name) == (EMAIL_SENSOR, WEBHOOK_SENSOR)
        mail_tick = _tick(email_sensor, instance, failed.cursor)
        hook_tick = _tick(webhook_sensor, instance, failed.cursor)

    # one reaction per failed run, none of them an error: both were delivered
    for tick in (mail_tick, hook_tick):
        reactions = {r.dagster_run.run_id: r.error for r in tick.dagster_run_reactions}
        assert reactions == {failed.gate_run.run_id: None, failed.step_run.run_id: None}
        assert tick.cursor != failed.cursor
    assert box.logins == [SENDER, SENDER]
    assert len(box.messages) == 2 and len(hook.posts) == 2
    by_run = {}
    for sender, recipients, message in box.messages:
        assert sender == SENDER and recipients == list(RECIPIENTS)
        assert message["To"] == ",".join(RECIPIENTS)
        run_id = next(
            r for r in (failed.gate_run.run_id, failed.step_run.run_id) if r in _text(message)
        )
        by_run[run_id] = message
    posts = {body["run_id"]: (path, ctype, body) for path, ctype, body in hook.posts}

    # the gate-refused run: the job, the check that refused it with its figures, the step, a link
    gate_id = failed.gate_run.run_id
    text = _text(by_run[gate_id])
    assert text.startswith("[mlassets] training_job: check evaluation_report/f1_gate failed")
    assert "Failed check evaluation_report/f1_gate: f1 = " in text
    assert "FAILS the gate >= 1.01" in text
    assert "Failed step metric_gates:" in text and "f1_gate" in text
    assert f"/runs/{gate_id}" in text
    assert f'href="http://127.0.0.1:3000/runs/{gate_id}"' in by_run[gate_id].get_payload()
    path, ctype, body = posts[gate_id]
    assert (path, ctype) == ("/hooks/mlassets", "application/json")
    assert body["job"] == "training_job" and body["event"] == "run_failure"
    [check] = body["failed_checks"]
    assert (check["asset"], check["check"]) == ("evaluation_report", "f1_gate")
    assert "FAILS the gate >= 1.01" in check["description"]
    assert [s["step"] for s in body["failed_steps"]] == ["metric_gates"]
    assert body["ui_path"] == f"/runs/{gate_id}"
    assert body["url"] == f"http://127.0.0.1:3000/runs/{gate_id}"
    assert "f1_gate" in body["text"] and "metric_gates" in body["message"]

    # the failed step: its root cause (not Dagster's wrapper), cut to a bounded size
    from mlassets.ml.bounded import MESSAGE_BYTES

    step_id = failed.step_run.run_id
    text = _text(by_run[step_id])
    assert text.startswith("[mlassets] training_job: step candidate_model failed")
    assert "Failed step candidate_model: ValueError: Invalid parameter 'zzz" in text
    assert "… [cut:" in text  # non-ASCII reaches the reader (smtplib sends ASCII only)
    raw = by_run[step_id].as_bytes()
    assert len(raw) < 4 * MESSAGE_BYTES
    assert max(len(line) for line in raw.splitlines()) <= 998  # SMTP's limit, lines unbroken
    _, _, body = posts[step_id]
    assert body["failed_checks"] == []
    [step] = body["failed_steps"]
    assert step["step"] == "candidate_model"
    assert step["message"].startswith("ValueError: Invalid parameter 'zzz"), step["message"][:200]
    assert "[cut:" in step["message"]
    assert len(json.dumps(body).encode()) < 4 * MESSAGE_BYTES
    # the failed run is 50 KB of the user's text; the alert is a few KB


@pytest.mark.integration
def test_receivers_down_are_logged_and_never_wedge_the_sensors(failed, capfd):
    """A webhook that refuses or answers 503 and an SMTP server that is gone: each tick
    completes, the cursor moves past both runs (no retry storm on every tick), the webhook
    sensor logs why (Dagster's sensor log: stderr here, the tick's log in the daemon), and
    Dagster records the email error on the tick, not on the run."""
    from mlassets.alerts import email_on_failure, webhook_on_failure

    instance = failed.world.instance
    runs = {failed.gate_run.run_id, failed.step_run.run_id}
    refused = f"http://127.0.0.1:{_free_port()}/hooks/secret-token"
    gone = _settings(Mailbox(_free_port()))
    with http_receiver() as hook:
        capfd.readouterr()
        sensors = [
            webhook_on_failure(_settings(None, webhook=refused)),
            webhook_on_failure(_settings(None, webhook=f"{hook.url}/down")),
            email_on_failure(gone),
        ]
        ticks = [_tick(sensor, instance, failed.cursor) for sensor in sensors]
        logged = [line for line in capfd.readouterr().err.splitlines() if "POST to" in line]
    assert len(hook.posts) == 2  # the 503 receiver did get both posts
    for tick in ticks:
        assert {r.dagster_run.run_id for r in tick.dagster_run_reactions} == runs
        assert tick.cursor != failed.cursor
    webhook_errors = [r.error for t in ticks[:2] for r in t.dagster_run_reactions]
    assert webhook_errors == [None] * 4  # handled: logged, not raised
    email_errors = [r.error for r in ticks[2].dagster_run_reactions]
    assert all(e is not None and "Connection refused" in e.to_string() for e in email_errors)
    assert len(logged) == 4, logged
    assert all("ERROR - webhook_on_failure: POST to http://127.0.0.1:" in m for m in logged)
    assert sum("Connection refused" in m for m in logged) == 2
    assert sum("HTTP Error 503" in m for m in logged) == 2
    assert not any("secret-token" in m for m in logged)  # the URL's path may be a credential


ALERT_ENV = {
    "MLASSETS_ALERT_SMTP_HOST": "smtp.example.test",
    "MLASSETS_ALERT_SMTP_FROM": SENDER,
    "MLASSETS_ALERT_SMTP_TO": RECIPIENTS[0],
    "MLASSETS_ALERT_SMTP_PASSWORD": PASSWORD,
    "MLASSETS_ALERT_WEBHOOK_URL": "https://hooks.example.test/T0/B0/x",
}


@pytest.mark.unit
def test_no_alert_variables_no_alert_sensors(monkeypatch, env):
    """Off unless configured: no sensor that could send anything; set, both run by default."""
    from dagster import DefaultSensorStatus

    from mlassets.alerts import VARIABLES

    for key in VARIABLES:
        monkeypatch.delenv(key, raising=False)
    names = {s.name for s in env.defs().sensors}
    assert names == {"drift_sensor"}

    for key, value in ALERT_ENV.items():
        monkeypatch.setenv(key, value)
    sensors = {s.name: s for s in env.defs().sensors}
    assert set(sensors) == {"drift_sensor", "email_on_failure", "webhook_on_failure"}
    for name in ("email_on_failure", "webhook_on_failure"):
        assert sensors[name].default_status == DefaultSensorStatus.RUNNING


@pytest.mark.unit
@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"MLASSETS_ALERT_SMTP_PASSWORD": ""}, "MLASSETS_ALERT_SMTP_PASSWORD"),
        ({"MLASSETS_ALERT_SMTP_TO": ""}, "MLASSETS_ALERT_SMTP_TO"),
        ({"MLASSETS_ALERT_SMTP_TLS": "none"}, "MLASSETS_ALERT_SMTP_TLS"),
        ({"MLASSETS_ALERT_SMTP_PORT": "smtp"}, "MLASSETS_ALERT_SMTP_PORT"),
        ({"MLASSETS_ALERT_SMTP_TO": "oncall"}, "MLASSETS_ALERT_SMTP_TO"),
        ({"MLASSETS_ALERT_SMTP_HOST": ""}, "MLASSETS_ALERT_SMTP_HOST"),
        ({"MLASSETS_ALERT_WEBHOOK_URL": "file:///etc/passwd"}, "MLASSETS_ALERT_WEBHOOK_URL"),
    ],
)
def test_half_configured_alerts_fail_at_load_naming_the_variable(change, named):
    from mlassets.alerts import AlertConfigError, alert_sensors

    with pytest.raises(AlertConfigError, match=named):
        alert_sensors({**ALERT_ENV, **change})


@pytest.mark.unit
def test_alert_settings_defaults():
    from mlassets.alerts import alert_settings

    s = alert_settings(ALERT_ENV)
    assert (s.smtp_tls, s.smtp_port, s.smtp_user) == ("starttls", 587, SENDER)
    assert alert_settings({**ALERT_ENV, "MLASSETS_ALERT_SMTP_TLS": "SSL"}).smtp_port == 465
    assert "B0" not in repr(s) and PASSWORD not in repr(s)
    assert not alert_settings({}).email and not alert_settings({}).webhook


@pytest.mark.unit
def test_the_webhook_is_logged_without_its_credentials_path_or_query():
    from mlassets.alerts import _where

    url = "https://bot:s3cret@hooks.example.test:8443/services/T0/B0/XyZ?token=abc"
    assert _where(url) == "https://hooks.example.test:8443"
