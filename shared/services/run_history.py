"""Run history in ops.pipeline_runs: every invocation records start, end, status, rows, error.

Use ``with record_run(warehouse, step=..., run_id=..., run_date=...) as run:`` and set
``run.rows_in`` / ``run.rows_out``; an exception marks the row failed (with its type and a
redacted message) and is re-raised. ``recent_runs`` reads the history back for operators.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from shared.adapters.warehouse.base import Warehouse
from shared.logs import redact

log = logging.getLogger(__name__)


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
    # Why a step ended "rejected" without raising (e.g. a quarantined CRM file): shown by `runs`.
    error_message: str | None = None


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


@contextlib.contextmanager
def record_run(
    warehouse: Warehouse,
    *,
    step: str,
    run_id: str,
    run_date: dt.date | None = None,
    trigger_name: str | None = None,
    clock: Callable[[], dt.datetime] = utcnow,
) -> Iterator[RunRecord]:
    record = RunRecord(run_id, step, run_date, trigger_name, clock())
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
    clock: Callable[[], dt.datetime],
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
