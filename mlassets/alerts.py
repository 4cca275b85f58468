"""Failure alerts: every failed run, a gate refusal included, is emailed and/or posted to a webhook.

A training run whose blocking gate fails is a failed run in Dagster, so one run-failure sensor
covers failed steps and refused gates alike. Email goes through Dagster's own
`make_email_on_run_failure_sensor`; the webhook is a `run_failure_sensor` that POSTs JSON. Both
are off unless configured: with no `MLASSETS_ALERT_*` variable set the code location has no alert
sensor at all, so the UI never shows a RUNNING sensor that tells nobody, and `make demo` sends
nothing. This module is the one home of the alert variables:

- `MLASSETS_ALERT_SMTP_HOST` turns email on; `MLASSETS_ALERT_SMTP_FROM`, `MLASSETS_ALERT_SMTP_TO`
  (comma-separated) and `MLASSETS_ALERT_SMTP_PASSWORD` are then required;
  `MLASSETS_ALERT_SMTP_USER` (default: the sender), `MLASSETS_ALERT_SMTP_TLS` (`starttls`, the
  default, or `ssl`) and `MLASSETS_ALERT_SMTP_PORT` (default 587 for starttls, 465 for ssl).
  Dagster's helper always uses TLS and logs in, so `none` is refused; the server's certificate is
  verified against the system's CAs (`SSL_CERT_FILE` names another bundle, e.g. a private CA).
- `MLASSETS_ALERT_WEBHOOK_URL` turns the webhook on (http or https).
- `MLASSETS_ALERT_UI_URL` (optional), the webserver's base URL, makes the run link absolute.

The sensors watch every run of the Dagster instance (`monitor_all_code_locations`): runs started
with `dagster asset materialize` (the README's way to train) carry no code-location origin, and a
sensor limited to this location's jobs would never see them. They start RUNNING, but like every
sensor they run only where the daemon runs (`make dev`, `deploy/*/start`).
"""

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from dagster import (
    AssetCheckSeverity,
    DagsterEventType,
    DefaultSensorStatus,
    RunFailureSensorContext,
    SensorDefinition,
    make_email_on_run_failure_sensor,
    run_failure_sensor,
)

from mlassets.ml.bounded import MESSAGE_BYTES, SAMPLE_SIZE, VALUE_BYTES, clip

PREFIX = "MLASSETS_ALERT_"
SMTP_HOST = f"{PREFIX}SMTP_HOST"
SMTP_PORT = f"{PREFIX}SMTP_PORT"
SMTP_TLS = f"{PREFIX}SMTP_TLS"
SMTP_FROM = f"{PREFIX}SMTP_FROM"
SMTP_TO = f"{PREFIX}SMTP_TO"
SMTP_USER = f"{PREFIX}SMTP_USER"
SMTP_PASSWORD = f"{PREFIX}SMTP_PASSWORD"
WEBHOOK_URL = f"{PREFIX}WEBHOOK_URL"
UI_URL = f"{PREFIX}UI_URL"
VARIABLES = (SMTP_HOST, SMTP_PORT, SMTP_TLS, SMTP_FROM, SMTP_TO, SMTP_USER, SMTP_PASSWORD)
VARIABLES += (WEBHOOK_URL, UI_URL)

# Dagster's helper names its protocols "STARTTLS" and "SSL", with these default ports.
TLS_MODES = {"starttls": ("STARTTLS", 587), "ssl": ("SSL", 465)}
# A webhook that does not answer within this many seconds is logged as failed; the tick moves on.
WEBHOOK_TIMEOUT = 5.0
EMAIL_SENSOR = "email_on_failure"
WEBHOOK_SENSOR = "webhook_on_failure"


class AlertConfigError(ValueError):
    """An `MLASSETS_ALERT_*` variable is missing or wrong; the message names it."""


@dataclass(frozen=True)
class AlertSettings:
    """Where alerts go; `None` for a channel that is off."""

    smtp_host: str | None = None
    smtp_port: int | None = None
    smtp_tls: str = "starttls"
    email_from: str | None = None
    email_to: tuple[str, ...] = ()
    smtp_user: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    webhook_url: str | None = field(default=None, repr=False)  # Slack-style URLs hold a secret
    ui_url: str | None = None

    @property
    def email(self) -> bool:
        return bool(self.smtp_host)

    @property
    def webhook(self) -> bool:
        return bool(self.webhook_url)


def alert_settings(environ: Mapping[str, str] | None = None) -> AlertSettings:
    """The alert settings from `environ` (default `os.environ`), checked at load so that a
    half-configured channel fails the code location with the variable's name instead of
    silently telling nobody."""
    source = os.environ if environ is None else environ
    env = {k: v.strip() for k, v in source.items() if k.startswith(PREFIX)}

    def get(key: str) -> str | None:
        return env.get(key) or None

    host, webhook = get(SMTP_HOST), get(WEBHOOK_URL)
    ui_url = get(UI_URL)
    if ui_url and not ui_url.startswith(("http://", "https://")):
        raise AlertConfigError(f"{UI_URL}={clip(ui_url, VALUE_BYTES)!r} is not an http(s) URL")
    if webhook and not webhook.startswith(("http://", "https://")):
        raise AlertConfigError(f"{WEBHOOK_URL} must be an http:// or https:// URL")
    if not host:
        stray = [k for k in VARIABLES if k.startswith(f"{PREFIX}SMTP_") and get(k)]
        if stray:
            raise AlertConfigError(
                f"{', '.join(stray)} set but {SMTP_HOST} is not: set it to send email, "
                "or unset the others"
            )
        return AlertSettings(webhook_url=webhook, ui_url=ui_url and ui_url.rstrip("/"))

    tls = (get(SMTP_TLS) or "starttls").lower()
    if tls not in TLS_MODES:
        raise AlertConfigError(
            f"{SMTP_TLS}={clip(tls, VALUE_BYTES)!r}: use starttls or ssl (Dagster's email "
            "sensor, make_email_on_run_failure_sensor, always uses TLS and logs in)"
        )
    missing = [k for k in (SMTP_FROM, SMTP_TO, SMTP_PASSWORD) if not get(k)]
    if missing:
        raise AlertConfigError(
            f"{SMTP_HOST} is set, so email alerts need {', '.join(missing)} too "
            "(Dagster's email sensor always logs in: the user defaults to the sender)"
        )
    recipients = tuple(a.strip() for a in env[SMTP_TO].split(",") if a.strip())
    bad = [a for a in (env[SMTP_FROM], *recipients) if "@" not in a or not a.isascii()]
    if bad or not recipients:
        raise AlertConfigError(
            f"{SMTP_FROM}/{SMTP_TO}: not an ASCII email address: "
            f"{[clip(a, VALUE_BYTES) for a in bad[:SAMPLE_SIZE]]}"
        )
    port = get(SMTP_PORT)
    if port is not None and not (port.isdigit() and 0 < int(port) < 65536):
        raise AlertConfigError(f"{SMTP_PORT}={clip(port, VALUE_BYTES)!r} is not a TCP port")
    return AlertSettings(
        smtp_host=host,
        smtp_port=int(port) if port else TLS_MODES[tls][1],
        smtp_tls=tls,
        email_from=env[SMTP_FROM],
        email_to=recipients,
        smtp_user=get(SMTP_USER) or env[SMTP_FROM],
        smtp_password=env[SMTP_PASSWORD],
        webhook_url=webhook,
        ui_url=ui_url and ui_url.rstrip("/"),
    )


@dataclass(frozen=True)
class RunFailure:
    """What a person needs from a failed run: which job, which checks refused it and why, which
    steps failed and why, and where to look. Every text is clipped: user data reaches these
    messages (a failed check shows offending values, an exception its input)."""

    job: str
    run_id: str
    message: str
    checks: tuple[tuple[str, str, str], ...] = ()  # (asset, check, description)
    steps: tuple[tuple[str, str], ...] = ()  # (step key, root-cause message)
    more_checks: int = 0
    more_steps: int = 0
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def ui_path(self) -> str:
        return f"/runs/{self.run_id}"

    def headline(self) -> str:
        """One line: the job and the first failed check, else the first failed step."""
        if self.checks:
            asset, check, _ = self.checks[0]
            what = f"check {asset}/{check} failed"
        elif self.steps:
            what = f"step {self.steps[0][0]} failed"
        else:
            what = "run failed"
        return clip(f"[mlassets] {self.job}: {what} (run {self.run_id[:8]})", VALUE_BYTES)

    def lines(self) -> list[str]:
        """The alert as plain lines, most useful first."""
        out = [f"Job {self.job} failed.", f"Run ID: {self.run_id}"]
        out += [f"Failed check {a}/{c}: {d}" for a, c, d in self.checks]
        if self.more_checks:
            out.append(f"... and {self.more_checks} more failed check(s)")
        out += [f"Failed step {s}: {m}" for s, m in self.steps]
        if self.more_steps:
            out.append(f"... and {self.more_steps} more failed step(s)")
        out.append(f"Dagster: {self.message}")
        out += [f"Tag {k}: {v}" for k, v in self.tags.items()]
        out.append(f"Dagster UI: {self.ui_path}")
        return out

    def payload(self, ui_url: str | None = None) -> dict:
        """The webhook's JSON body; `text` makes it readable by Slack-style incoming webhooks."""
        return {
            "source": "mlassets",
            "event": "run_failure",
            "text": "\n".join([self.headline(), *self.lines()]),
            "job": self.job,
            "run_id": self.run_id,
            "message": self.message,
            "failed_checks": [
                {"asset": a, "check": c, "description": d} for a, c, d in self.checks
            ],
            "failed_steps": [{"step": s, "message": m} for s, m in self.steps],
            "more_failed_checks": self.more_checks,
            "more_failed_steps": self.more_steps,
            "tags": dict(self.tags),
            "ui_path": self.ui_path,
            "url": f"{ui_url}{self.ui_path}" if ui_url else None,
        }


def _root_message(error) -> str:
    """The innermost cause's message: Dagster wraps a step's exception in
    `DagsterExecutionStepExecutionError`, whose own message only says which op failed."""
    while error is not None and getattr(error, "cause", None) is not None:
        error = error.cause
    return (error.message if error is not None else "").strip()


def run_failure(context: RunFailureSensorContext) -> RunFailure:
    """Read the failed run's failed blocking checks and failed steps from the instance."""
    run = context.dagster_run
    # the records Dagster's own `get_step_failure_events` reads, of the check-evaluation type
    records = context.instance.get_records_for_run(
        run_id=run.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION
    ).records
    checks = []
    for record in records:
        evaluation = record.event_log_entry.dagster_event.event_specific_data
        if evaluation.passed or evaluation.severity != AssetCheckSeverity.ERROR:
            continue
        checks.append(
            (
                clip(evaluation.asset_key.to_user_string(), VALUE_BYTES),
                clip(evaluation.check_name, VALUE_BYTES),
                clip(evaluation.description or "(no description)", MESSAGE_BYTES),
            )
        )
    steps = [
        (
            clip(event.step_key or "?", VALUE_BYTES),
            clip(_root_message(event.step_failure_data.error) or "(no message)", MESSAGE_BYTES),
        )
        for event in context.get_step_failure_events()
    ]
    tags = {
        clip(k, VALUE_BYTES): clip(v, VALUE_BYTES)
        for k, v in sorted(run.tags.items())
        if k.startswith("mlassets/")
    }
    return RunFailure(
        job=clip(run.job_name, VALUE_BYTES),
        run_id=run.run_id,
        message=clip(context.failure_event.message or "", MESSAGE_BYTES),
        checks=tuple(checks[:SAMPLE_SIZE]),
        steps=tuple(steps[:SAMPLE_SIZE]),
        more_checks=max(len(checks) - SAMPLE_SIZE, 0),
        more_steps=max(len(steps) - SAMPLE_SIZE, 0),
        tags=dict(list(tags.items())[:SAMPLE_SIZE]),
    )


def email_subject(failure: RunFailure) -> str:
    """A header-safe subject: Dagster writes it into the message as is and `smtplib` sends the
    message as ASCII, so line breaks go and anything else non-ASCII is RFC 2047-encoded."""
    from email.header import Header

    subject = " ".join(failure.headline().split())
    return subject if subject.isascii() else Header(subject, "utf-8").encode()


def email_body(failure: RunFailure) -> str:
    """HTML (Dagster's helper sends `text/html`) that survives SMTP as Dagster sends it: text
    escaped; non-ASCII as character references (`smtplib.sendmail` encodes a text message as
    ASCII and would refuse the `…` a clipped message ends with); and no line over SMTP's 998
    characters (servers refuse it, "Line too long", and the helper sets no transfer encoding),
    so long text is broken inside a `<wbr>` tag, where a line break shows as nothing."""
    import html

    def safe(text: str) -> str:
        return html.escape(text).encode("ascii", "xmlcharrefreplace").decode("ascii")

    def line_safe(line: str) -> str:
        if len(safe(line)) <= 900:
            return safe(line)
        # 80 characters grow to at most 800 escaped (the longest, `&#1114111;`, is 10)
        return "<wbr\n>".join(safe(line[i : i + 80]) for i in range(0, len(line), 80))

    lines = [line_safe(line) for text in failure.lines() for line in text.splitlines() or [""]]
    return "<br>\n".join(lines)


def email_on_failure(settings: AlertSettings) -> SensorDefinition:
    """Dagster's email run-failure sensor, with our subject and body."""
    protocol, _ = TLS_MODES[settings.smtp_tls]
    return make_email_on_run_failure_sensor(
        name=EMAIL_SENSOR,
        email_from=settings.email_from,
        email_password=settings.smtp_password,
        email_to=list(settings.email_to),
        email_subject_fn=lambda context: email_subject(run_failure(context)),
        email_body_fn=lambda context: email_body(run_failure(context)),
        smtp_host=settings.smtp_host,
        smtp_type=protocol,
        smtp_port=settings.smtp_port,
        smtp_user=settings.smtp_user,
        webserver_base_url=settings.ui_url,
        monitor_all_code_locations=True,
        default_status=DefaultSensorStatus.RUNNING,
    )


def post_json(url: str, body: dict, timeout: float = WEBHOOK_TIMEOUT) -> int:
    """POST `body` as JSON; the HTTP status, or an exception (`urllib` raises on >= 400)."""
    import json
    import urllib.request

    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode("utf-8"),
        headers={"Content-Type": "application/json", "User-Agent": "mlassets-alerts"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (http(s) only)
        return response.status


def _where(url: str) -> str:
    """The URL without its credentials, path and query, which often hold the webhook's secret."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}"


def webhook_on_failure(settings: AlertSettings) -> SensorDefinition:
    """A run-failure sensor that POSTs `RunFailure.payload` to the webhook URL."""
    url, ui_url = settings.webhook_url, settings.ui_url

    @run_failure_sensor(
        name=WEBHOOK_SENSOR,
        monitor_all_code_locations=True,
        default_status=DefaultSensorStatus.RUNNING,
        description=f"POSTs a JSON alert for every failed run to {_where(url)} (from {WEBHOOK_URL}).",
    )
    def _webhook(context: RunFailureSensorContext) -> None:
        """A webhook that is down is logged on the tick and skipped: the alert is lost, the
        cursor still moves on, so one dead receiver never wedges the sensor."""
        failure = run_failure(context)
        try:
            status = post_json(url, failure.payload(ui_url))
        except Exception as e:  # noqa: BLE001 (any failure to deliver is logged, never raised)
            context.log.error(
                clip(
                    f"{WEBHOOK_SENSOR}: POST to {_where(url)} for run {failure.run_id} of "
                    f"{failure.job} failed: {type(e).__name__}: {e}"
                )
            )
            return
        context.log.info(
            f"{WEBHOOK_SENSOR}: run {failure.run_id} of {failure.job} posted to {_where(url)} "
            f"(HTTP {status})"
        )

    return _webhook


def alert_sensors(environ: Mapping[str, str] | None = None) -> Sequence[SensorDefinition]:
    """The configured alert sensors: none when no `MLASSETS_ALERT_*` variable is set."""
    settings = alert_settings(environ)
    sensors = []
    if settings.email:
        sensors.append(email_on_failure(settings))
    if settings.webhook:
        sensors.append(webhook_on_failure(settings))
    return sensors
