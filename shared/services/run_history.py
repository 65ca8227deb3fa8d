"""Run history in ops.pipeline_runs: every invocation records start, end, status, rows, error.

Use ``with record_run(warehouse, step=..., run_id=..., run_date=...) as run:`` and set
``run.rows_in`` / ``run.rows_out``; an exception marks the row failed (with its type and a
redacted message) and is re-raised. ``recent_runs`` reads the history back for operators.

A process killed mid-step cannot finish its row: the row keeps ``running`` and its heartbeat
(set at start, refreshed by ``run.beat()`` while the step works) stops moving.
``recover_abandoned_runs`` marks such rows ``abandoned`` once the heartbeat is older than the
lease (RUN_LEASE_MINUTES), alerts once per run, and removes the landing rows no live load owns.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from shared.adapters.warehouse.base import Warehouse
from shared.clock import Clock, naive_utc, utc_now
from shared.logs import redact
from shared.services.alerts import AlertSink, new_alert, send_safely

log = logging.getLogger(__name__)


# A step refreshes its heartbeat at most this often (the lease is many times longer).
HEARTBEAT_EVERY = dt.timedelta(minutes=1)


@dataclass
class RunRecord:
    run_id: str
    step: str
    run_date: dt.date | None
    trigger_name: str | None
    started_at: dt.datetime
    rows_in: int | None = None
    rows_out: int | None = None
    status: str = "running"
    # Why a step ended without raising (rejected, refused, skipped): shown by `runs`.
    error_message: str | None = None
    warehouse: Warehouse | None = field(default=None, repr=False)
    clock: Clock = field(default=utc_now, repr=False)
    last_beat: dt.datetime | None = None

    def beat(self) -> None:
        """Still alive: refresh the heartbeat (cheap to call often; writes at most once a minute)."""
        now = self.clock()
        if self.warehouse is None or (self.last_beat is not None and now - self.last_beat < HEARTBEAT_EVERY):
            return
        self.last_beat = now
        self.warehouse.run(
            "ops/pipeline_runs__heartbeat", {"run_id": self.run_id, "step": self.step, "heartbeat_at": now}
        )


@contextlib.contextmanager
def record_run(
    warehouse: Warehouse,
    *,
    step: str,
    run_id: str,
    run_date: dt.date | None = None,
    trigger_name: str | None = None,
    clock: Clock = utc_now,
) -> Iterator[RunRecord]:
    record = RunRecord(run_id, step, run_date, trigger_name, clock(), warehouse=warehouse, clock=clock)
    record.last_beat = record.started_at
    warehouse.run(
        "ops/pipeline_runs__start",
        {
            "run_id": run_id,
            "step": step,
            "run_date": run_date,
            "trigger_name": trigger_name,
            "started_at": record.started_at,
        },
    )
    started = time.monotonic()
    try:
        yield record
    except BaseException as exc:
        # Ctrl-C is not a failure of the step: `runs --status interrupted` finds what to resume.
        record.status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        try:
            _finish(warehouse, record, started, clock, error=exc)
        except Exception as finish_error:
            # The step's own error decides retries and alerts; a warehouse that cannot record
            # the failure (often the same outage) must not replace it.
            log.error("could not record the failure of step %s (%s)", record.step, type(finish_error).__name__)
        raise
    else:
        record.status = "succeeded" if record.status == "running" else record.status
        _finish(warehouse, record, started, clock)


def _finish(
    warehouse: Warehouse,
    record: RunRecord,
    started: float,
    clock: Clock,
    error: BaseException | None = None,
) -> None:
    warehouse.run(
        "ops/pipeline_runs__finish",
        {
            "run_id": record.run_id,
            "step": record.step,
            "status": record.status,
            "rows_in": record.rows_in,
            "rows_out": record.rows_out,
            "finished_at": clock(),
            "duration_ms": int((time.monotonic() - started) * 1000),
            "error_type": type(error).__name__ if error else None,
            "error_message": redact(str(error))[:2000] if error else _own_message(record),
        },
    )


def _own_message(record: RunRecord) -> str | None:
    return redact(record.error_message)[:2000] if record.error_message else None


def recent_runs(
    warehouse: Warehouse,
    run_date: dt.date | None = None,
    limit: int = 50,
    *,
    step: str | None = None,
    status: str | None = None,
) -> list[dict[str, Any]]:
    """The latest recorded steps, newest first; only those of ``run_date``, ``step`` and
    ``status`` when given."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    return warehouse.run(
        "ops/pipeline_runs__recent", {"run_date": run_date, "step": step, "status": status, "limit": int(limit)}
    )


# ---- recovery after a kill -------------------------------------------------------------------
STEP_RECOVERY = "recovery"


@dataclass(frozen=True)
class AbandonedRun:
    run_id: str
    step: str
    run_date: dt.date | None
    last_heartbeat_at: dt.datetime


@dataclass(frozen=True)
class DebrisReport:
    abandoned: list[AbandonedRun]
    landing_rows_removed: dict[str, int]


def recover_abandoned_runs(
    warehouse: Warehouse,
    alerts: AlertSink,
    *,
    pipeline: str,
    lease: dt.timedelta,
    now: dt.datetime,
    run_id: str,
) -> DebrisReport:
    """Mark running steps without a heartbeat for ``lease`` as abandoned (one alert each), then
    remove the landing rows of loads that are no longer running. Safe beside live runs and
    against a second sweeper: each update is conditional on the row still running."""
    now = naive_utc(now)
    abandoned = [
        AbandonedRun(row["run_id"], row["step"], row["run_date"], row["last_heartbeat_at"])
        for row in warehouse.run("ops/pipeline_runs__stale", {"stale_before": now - lease})
    ]
    for run in abandoned:
        message = (
            f"step {run.step} of run {run.run_id} stopped without finishing (no heartbeat since "
            f"{run.last_heartbeat_at:%Y-%m-%d %H:%M} UTC, lease {int(lease.total_seconds() // 60)} min): "
            "its process was killed or lost. Its partial landing rows are removed; the work is redone by "
            "the next trigger of that input or date."
        )
        warehouse.run(
            "ops/pipeline_runs__abandon",
            {"run_id": run.run_id, "step": run.step, "finished_at": now, "error_message": message},
        )
        log.warning("marked abandoned: %s", message)
        send_safely(
            alerts,
            new_alert(
                pipeline,
                run.step,
                "error",
                "Run abandoned",
                message,
                run_id=run.run_id,
                dates=[run.run_date] if run.run_date else [],
                subject=f"run {run.run_id}/{run.step}",
                facts={"detected by": run_id},
            ),
        )
    removed = {row["landing_table"]: int(row["row_count"]) for row in warehouse.run("stg/landing__dead_load_counts")}
    if any(removed.values()):
        warehouse.run("stg/landing__discard_dead_loads")
        log.info("removed landing rows of dead loads: %s", ", ".join(f"{t}={n}" for t, n in removed.items() if n))
    return DebrisReport(abandoned, {t: n for t, n in removed.items() if n})
