"""Alert deliveries in ops: every alert handed to the sink is recorded with how it ended.

``RecordedAlertSink`` wraps the configured sink (webhook or log). It sends FIRST and records
after: an alert about a warehouse outage must still reach the operator, so a warehouse that
cannot take the record only costs the record (logged, and not retried for a minute so a down
warehouse does not slow every alert). ``retry_failed_deliveries`` is what the usage timer calls
on each tick: failed deliveries are sent again, as they were, until tried
``ALERT_RETRY_MAX_ATTEMPTS`` times. ``recent_deliveries`` is what the operator's ``alerts``
command lists.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from shared.adapters.warehouse.base import Row, Warehouse
from shared.adapters.webhook import DeliveryResult
from shared.clock import Clock, naive_utc, utc_now
from shared.services.alerts import Alert, AlertSink
from shared.services.resources import StepResources

log = logging.getLogger(__name__)

_RECORD_SQL = "ops/alert_deliveries__record"
_UPDATE_SQL = "ops/alert_deliveries__update"
_RETRY_DUE_SQL = "ops/alert_deliveries__retry_due"
_RECENT_SQL = "ops/alert_deliveries__recent"
# After the warehouse refused a record, the next ones are skipped for this long (seconds).
_RECORD_COOL_DOWN_S = 60.0
# Deliveries retried per tick at most: a long webhook outage must not make one tick endless.
RETRY_BATCH = 50


class RecordedAlertSink:
    """Any sink, with each send recorded in ops.alert_deliveries (best effort, after sending)."""

    def __init__(
        self,
        inner: AlertSink,
        warehouse: Callable[[], Warehouse],
        clock: Clock = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inner = inner
        self._warehouse = warehouse  # lazy: building it may be what fails
        self._clock = clock
        self._monotonic = monotonic
        self._skip_until = 0.0

    def send(self, alert: Alert) -> DeliveryResult:
        result = as_result(self.inner.send(alert))
        if self._monotonic() < self._skip_until:
            log.warning("alert delivery (%s) not recorded in ops: the warehouse was unavailable", result.status)
            return result
        try:
            record_delivery(self._warehouse(), alert.redacted(), result, naive_utc(self._clock()))
        except Exception as exc:  # the alert went out; only its record is lost
            self._skip_until = self._monotonic() + _RECORD_COOL_DOWN_S
            log.warning("alert delivery (%s) not recorded in ops (%s)", result.status, type(exc).__name__)
        return result


def as_result(value: DeliveryResult | None) -> DeliveryResult:
    """Sinks that report nothing (test doubles) count as one successful send."""
    return value if isinstance(value, DeliveryResult) else DeliveryResult("sent", 1)


def record_delivery(warehouse: Warehouse, alert: Alert, result: DeliveryResult, now: dt.datetime) -> str:
    """Insert one delivery row; returns its id. ``alert`` is already redacted."""
    delivery_id = uuid.uuid4().hex
    warehouse.run(
        _RECORD_SQL,
        {
            "delivery_id": delivery_id,
            "alert_key": alert.dedup_key()[:1000],
            "pipeline": alert.pipeline[:128],
            "step": alert.step[:64],
            "severity": alert.severity[:16],
            "alert_date": alert.date,
            "subject": alert.subject[:1024] if alert.subject else None,
            "run_id": alert.run_id,
            "title": alert.title[:400],
            "message": alert.message[:2000],
            "facts_json": json.dumps(alert.facts, sort_keys=True)[:4000],
            "status": result.status,
            "attempts": 1,
            "last_error_type": result.error_type,
            "attempted_at": now,
        },
    )
    return delivery_id


@dataclass(frozen=True)
class RetryOutcome:
    tried: int
    sent: int
    failed: int


def retry_failed_deliveries(
    warehouse: Warehouse, sink: AlertSink, max_attempts: int, now: dt.datetime, limit: int = RETRY_BATCH
) -> RetryOutcome:
    """Send each failed delivery again, as recorded, and update its row with the outcome.

    A retry goes through the webhook's de-duplication like any send: if the same incident
    reached the operator meanwhile, the row ends ``suppressed``."""
    deliver = sink.inner if isinstance(sink, RecordedAlertSink) else sink  # no second row per retry
    rows = warehouse.run(_RETRY_DUE_SQL, {"max_attempts": max_attempts, "limit": limit})
    sent = failed = 0
    for row in rows:
        result = as_result(deliver.send(alert_of(row)))
        failed += result.status == "failed"
        sent += result.status != "failed"
        warehouse.run(
            _UPDATE_SQL,
            {
                "delivery_id": row["delivery_id"],
                "status": result.status,
                "attempts": int(row["attempts"]) + 1,
                "last_error_type": result.error_type,
                "attempted_at": now,
            },
        )
    if rows:
        log.info("alert deliveries retried: %d sent, %d still failing", sent, failed)
    return RetryOutcome(len(rows), sent, failed)


def retry_on_schedule(resources: StepResources, now: dt.datetime) -> RetryOutcome | None:
    """The timer tick's call: never fails the tick (a down warehouse or webhook waits a tick)."""
    try:
        return retry_failed_deliveries(
            resources.warehouse, resources.alerts, resources.settings.alert_retry_max_attempts, naive_utc(now)
        )
    except Exception as exc:
        log.warning("failed alert deliveries not retried this tick (%s)", type(exc).__name__)
        return None


def alert_of(row: Row) -> Alert:
    """The recorded alert, as it was sent (rebuilt field by field: it was made by new_alert)."""
    try:
        facts = json.loads(row["facts_json"]) if row.get("facts_json") else {}
    except json.JSONDecodeError:
        facts = {}
    return Alert(
        pipeline=row["pipeline"],
        step=row["step"],
        severity=row["severity"],
        title=row["title"],
        message=row["message"],
        run_id=row["run_id"],
        date=row["alert_date"],
        facts={str(k): str(v) for k, v in facts.items()},
        subject=row["subject"],
    )


def recent_deliveries(
    warehouse: Warehouse,
    *,
    status: str | None = None,
    step: str | None = None,
    alert_date: dt.date | None = None,
    limit: int = 50,
) -> list[Row]:
    """The latest deliveries, newest first, filtered when asked."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    return warehouse.run(_RECENT_SQL, {"status": status, "step": step, "alert_date": alert_date, "limit": limit})
