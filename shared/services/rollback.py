"""Rollback of a date (``rollback``): its analytics rows removed and its last build forgotten.

Forgetting ``ops.date_builds`` is what marks the date for rebuild; the readiness gate keeps its
state (the builder compares the gate's versions with the recorded build, and there is none now).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import asdict, dataclass, replace
from typing import Any

from shared.adapters.warehouse.base import Warehouse
from shared.clock import Clock, utc_now
from shared.logs import log_context, new_run_id
from shared.rules.dates import refuse_future_dates
from shared.rules.json_report import json_safe
from shared.services.resources import HasWarehouse
from shared.services.run_history import record_run

log = logging.getLogger(__name__)


def rollback_date(
    resources: HasWarehouse, day: dt.date, *, dry_run: bool = False, clock: Clock = utc_now
) -> RollbackResult:
    """Roll ``day`` back, or (``dry_run``) say what a rollback would remove."""
    refuse_future_dates([day], clock())
    if dry_run:
        return rollback_preview(resources.warehouse, day)
    return roll_back(resources.warehouse, day)


@dataclass(frozen=True)
class RollbackResult:
    date: dt.date
    analytics_rows_removed: int
    build_record_removed: bool
    run_id: str | None  # None: nothing was done (a dry run, or a date never built)
    dry_run: bool = False
    never_built: bool = False  # no analytics rows and no build record: nothing to roll back

    def to_dict(self) -> dict[str, Any]:
        return json_safe(asdict(self))


def rollback_preview(warehouse: Warehouse, day: dt.date) -> RollbackResult:
    """What a rollback of ``day`` would remove (read only)."""
    preview = warehouse.run("ops/date_rollback__preview", {"activity_date": day})[0]
    rows, records = int(preview["analytics_rows"]), int(preview["build_records"])
    return RollbackResult(day, rows, bool(records), None, dry_run=True, never_built=not rows and not records)


def roll_back(warehouse: Warehouse, day: dt.date, *, run_id: str | None = None) -> RollbackResult:
    """Delete the analytics rows of ``day`` and forget its last build, in one transaction.

    Forgetting ``ops.date_builds`` is what marks the date for rebuild: the builder skips a date
    whose input versions equal the recorded ones, so without this a rebuild would be a no-op.
    Staging and dims stay: a rebuild derives identical rows from them.
    """
    preview = rollback_preview(warehouse, day)
    if preview.never_built:
        log.info("rollback of %s: never built (or already rolled back); nothing changed", day)
        return replace(preview, dry_run=False)
    run_id = run_id or new_run_id()
    with log_context(run_id=run_id, step="rollback", date=day.isoformat()):
        with record_run(warehouse, step="rollback", run_id=run_id, run_date=day, trigger_name="cli") as run:
            with warehouse.transaction():
                removed = warehouse.run("ops/date_rollback__preview", {"activity_date": day})[0]
                warehouse.run("ops/date_rollback__apply", {"activity_date": day})
            run.rows_in = int(removed["analytics_rows"])
            run.rows_out = 0
        log.info("rolled back %s: %s analytics rows removed", day, removed["analytics_rows"])
    return RollbackResult(
        date=day,
        analytics_rows_removed=int(removed["analytics_rows"]),
        build_record_removed=bool(removed["build_records"]),
        run_id=run_id,
    )
