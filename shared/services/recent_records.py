"""Recent pipeline runs and alert deliveries, for an operator looking back (``runs``, ``alerts``).

Both are one query of one shape (filter by date, step, status; newest first; a limit), over
``ops.pipeline_runs`` or ``ops.alert_deliveries``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any, Literal

from shared.adapters.warehouse.base import Warehouse
from shared.clock import Clock, utc_now
from shared.rules.dates import refuse_future_dates
from shared.rules.json_report import json_safe
from shared.services.alert_deliveries import recent_deliveries
from shared.services.resources import HasWarehouse
from shared.services.run_history import recent_runs

Records = Literal["runs", "alerts"]
# (warehouse, date, step, status, limit) -> rows, newest first
_QUERIES: dict[Records, Callable[[Warehouse, dt.date | None, str | None, str | None, int], list[Any]]] = {
    "runs": lambda wh, day, step, status, limit: recent_runs(wh, day, limit, step=step, status=status),
    "alerts": lambda wh, day, step, status, limit: recent_deliveries(
        wh, status=status, step=step, alert_date=day, limit=limit
    ),
}


def recent_records(
    resources: HasWarehouse,
    records: Records,
    *,
    day: dt.date | None = None,
    step: str | None = None,
    status: str | None = None,
    limit: int = 50,
    clock: Clock = utc_now,
) -> list[dict[str, Any]]:
    """Recent ``runs`` (ops.pipeline_runs) or ``alerts`` (ops.alert_deliveries), newest first,
    as JSON-safe rows; only those of ``day``, ``step`` and ``status`` when given."""
    if day is not None:
        refuse_future_dates([day], clock())
    return json_safe(_QUERIES[records](resources.warehouse, day, step, status, limit))
