"""Alerts: one sink interface; a log-only default and a webhook sink (adapters/webhook.py).

Services raise alerts through ``AlertSink.send``; they never format webhook payloads or know
where alerts go. An alert carries pipeline, step, date, run id and a message; it never
carries secrets (messages are redacted on the way out).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Protocol

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

    def dedup_key(self) -> str:
        """The same failure for the same date and step alerts once per dedup window."""
        return f"{self.pipeline}|{self.step}|{self.date}|{self.title}"

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
        )


class AlertSink(Protocol):
    def send(self, alert: Alert) -> None: ...


class LogAlertSink:
    """The default when no webhook is configured: alerts become ERROR/WARNING log records."""

    def send(self, alert: Alert) -> None:
        alert = alert.redacted()
        level = logging.ERROR if alert.severity == "error" else logging.WARNING
        log.log(
            level,
            "ALERT %s: %s",
            alert.title,
            alert.message,
            extra={"fields": {"alert_step": alert.step, "alert_date": str(alert.date), "alert_run_id": alert.run_id}},
        )


class RecordingAlertSink:
    """Keeps alerts in memory: for tests and for the local run's summary."""

    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    def send(self, alert: Alert) -> None:
        self.alerts.append(alert.redacted())
