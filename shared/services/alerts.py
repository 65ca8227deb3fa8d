"""Alerts: one sink interface; a log-only default and a webhook sink (adapters/webhook.py).

Services raise alerts through ``AlertSink.send``; they never format webhook payloads or know
where alerts go. An alert carries pipeline, step, date, run id and a message; it never
carries secrets (messages are redacted on the way out).

``failure_alert`` turns a failed step's exception into the one alert that step raises, and
``send_safely`` is how services send: an alert sink that fails never fails the step.
``DedupingAlertSink`` gives any sink the once-per-window de-duplication the webhook sink has.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from shared.adapters.webhook import AlertDedup, DeliveryResult, InMemoryAlertDedup
from shared.clock import Clock, utc_now
from shared.errors import PermanentError, RejectedInput, TransientError
from shared.logs import redact

log = logging.getLogger(__name__)

Severity = Literal["error", "warning", "info"]  # info: a resolved notice


@dataclass(frozen=True)
class Alert:
    pipeline: str
    step: str
    severity: Severity
    title: str
    message: str
    run_id: str | None = None
    date: dt.date | None = None
    facts: dict[str, str] = field(default_factory=dict)
    # What the incident is about beyond its date: a blob name with its ETag, a message id, a
    # check name. Two different bad files for one date are two incidents, two alerts.
    subject: str | None = None

    def dedup_key(self) -> str:
        """The same failure of the same step, date and subject alerts once per dedup window."""
        return f"{self.pipeline}|{self.step}|{self.date}|{self.subject or ''}|{self.title}"

    def redacted(self) -> Alert:
        return dataclasses.replace(
            self,
            title=redact(self.title),
            message=redact(self.message),
            facts={k: redact(v) for k, v in self.facts.items()},
            subject=redact(self.subject) if self.subject is not None else None,
        )


def new_alert(
    pipeline: str,
    step: str,
    severity: Severity,
    title: str,
    message: str,
    *,
    run_id: str | None = None,
    dates: Sequence[dt.date] = (),
    subject: str | None = None,
    facts: Mapping[str, str] | None = None,
) -> Alert:
    """How services build an alert, so its context is filled one way: ``pipeline`` is
    PIPELINE_NAME, ``step`` the step that raises it, ``run_id`` the run (None when there is no
    run yet). ``dates`` are the dates it is about: the alert's date is set only when there is
    exactly one, since the date is part of the de-duplication key and an alert about a range
    is one incident (the range belongs in the message or facts). ``subject`` names what the
    incident is about beyond its date (a blob version, a check, a message)."""
    return Alert(
        pipeline=pipeline,
        step=step,
        severity=severity,
        title=title,
        message=message,
        run_id=run_id,
        date=dates[0] if len(dates) == 1 else None,
        facts=dict(facts or {}),
        subject=subject,
    )


class AlertSink(Protocol):
    def send(self, alert: Alert) -> DeliveryResult | None: ...


class LogAlertSink:
    """The default when no webhook is configured: alerts become ERROR/WARNING log records."""

    def send(self, alert: Alert) -> DeliveryResult:
        alert = alert.redacted()
        level = logging.ERROR if alert.severity == "error" else logging.WARNING
        log.log(
            level,
            "ALERT %s: %s",
            alert.title,
            alert.message,
            extra={"fields": {"alert_step": alert.step, "alert_date": str(alert.date), "alert_run_id": alert.run_id}},
        )
        return DeliveryResult("log_only", 1)


class RecordingAlertSink:
    """Keeps alerts in memory: for tests and for the local run's summary."""

    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    def send(self, alert: Alert) -> DeliveryResult:
        self.alerts.append(alert.redacted())
        return DeliveryResult("sent", 1)


class DedupingAlertSink:
    """Wraps any sink: the same failure (pipeline, step, date, title) passes once per window."""

    def __init__(
        self,
        inner: AlertSink,
        dedup: AlertDedup | None = None,
        window: dt.timedelta = dt.timedelta(hours=1),
        clock: Clock = utc_now,
    ) -> None:
        self.inner = inner
        self.dedup = dedup if dedup is not None else InMemoryAlertDedup()
        self.window = window
        self._clock = clock

    def send(self, alert: Alert) -> DeliveryResult | None:
        key = alert.redacted().dedup_key()
        if self.window > dt.timedelta(0) and not self.dedup.claim(key, self._clock(), self.window):
            log.info("alert %r suppressed: already sent within %s", redact(alert.title), self.window)
            return DeliveryResult("suppressed")
        try:
            return self.inner.send(alert)
        except Exception:
            self.dedup.release(key)
            raise


def send_safely(sink: AlertSink, alert: Alert) -> None:
    """Send, and if the sink itself fails, log it: alerting never fails the step."""
    try:
        sink.send(alert)
    except Exception as exc:
        log.error("alert %r could not be sent (%s)", redact(alert.title), type(exc).__name__)


def error_kind(exc: BaseException) -> str:
    """How an operator should read a failure, from its type (never from its text)."""
    if isinstance(exc, TransientError):
        return "transient (retried by the host)"
    if isinstance(exc, RejectedInput):
        return "rejected input"
    if isinstance(exc, PermanentError):
        return "permanent (not retried)"
    return "error"


def failure_alert(
    pipeline: str, step: str, exc: BaseException, run_id: str | None = None, date: dt.date | None = None
) -> Alert:
    """The alert a failed step raises. The title names the step and the error type only, so
    the same failure on every retry (whatever its message) de-duplicates to one alert."""
    return new_alert(
        pipeline,
        step,
        "error",
        f"{step} failed: {type(exc).__name__}",
        redact(str(exc))[:1000] or type(exc).__name__,
        run_id=run_id,
        dates=[date] if date else [],
        facts={"Error type": type(exc).__name__, "Error kind": error_kind(exc)},
    )
