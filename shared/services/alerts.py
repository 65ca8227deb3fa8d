"""Alerts: one sink interface; a log-only default and a webhook sink (adapters/webhook.py).

Services raise alerts through ``AlertSink.send``; they never format webhook payloads or know
where alerts go. An alert carries pipeline, step, date, run id and a message; it never
carries secrets (messages are redacted on the way out).

``failure_alert`` turns a failed step's exception into the one alert that step raises, and
``send_safely`` is how services send: an alert sink that fails never fails the step.
``DedupingAlertSink`` gives any sink the once-per-window de-duplication the webhook sink has.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Protocol

from shared.adapters.webhook import AlertDedup, DeliveryResult, InMemoryAlertDedup
from shared.clock import Clock, utc_now
from shared.errors import PermanentError, RejectedInput, TransientError
from shared.logs import redact

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Alert:
    pipeline: str
    step: str
    severity: str  # "error" | "warning"
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
        return Alert(
            pipeline=self.pipeline,
            step=self.step,
            severity=self.severity,
            title=redact(self.title),
            message=redact(self.message),
            run_id=self.run_id,
            date=self.date,
            facts={k: redact(v) for k, v in self.facts.items()},
            subject=redact(self.subject) if self.subject is not None else None,
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
    return Alert(
        pipeline=pipeline,
        step=step,
        severity="error",
        title=f"{step} failed: {type(exc).__name__}",
        message=redact(str(exc))[:1000] or type(exc).__name__,
        run_id=run_id,
        date=date,
        facts={"Error type": type(exc).__name__, "Error kind": error_kind(exc)},
    )
