"""What the run report shows, read from the warehouse alone (sql/report/*.sql, no storage or API).

Each query returns rows for the days that have data; ``load_report_data`` lays them on the
calendar of the requested range so that unbuilt or missing days show as gaps, not as zeros.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from shared.adapters.warehouse.base import Row, Warehouse
from shared.rules.dates import as_date

DEFAULT_TOP_DROPS = 10
FINDING_STATUSES = ("fail", "error", "warn")  # what counts as a finding, worst first


@dataclass(frozen=True)
class DayActivity:
    """One built day: totals over its companies (sql/report/daily_activity.sql)."""

    day: dt.date
    row_count: int
    active_users: int
    events: int
    active_users_7d_avg: float
    active_users_28d_avg: float | None  # None: rows built before the 28-day columns existed
    events_7d_avg: float
    events_28d_avg: float | None
    rows_without_28d: int
    churn_risk_companies: int
    flagged_rows: int
    crm_stale_rows: int
    crm_snapshot_date: dt.date | None


@dataclass(frozen=True)
class DayInputs:
    """When the day's inputs were staged (sql/report/input_arrivals.sql); None = not staged."""

    day: dt.date
    crm_staged_at: dt.datetime | None = None
    crm_rows: int | None = None
    crm_hours_after_day_end: float | None = None
    usage_staged_at: dt.datetime | None = None
    usage_rows: int | None = None
    usage_hours_after_day_end: float | None = None
    quarantined_files: int = 0


@dataclass(frozen=True)
class Day:
    """One calendar day of the range with everything the report knows about it."""

    day: dt.date
    activity: DayActivity | None
    inputs: DayInputs
    checks: dict[str, int]  # status -> number of checks whose latest result has it

    @property
    def built(self) -> bool:
        return self.activity is not None

    @property
    def crm_stale(self) -> bool:
        return self.activity is not None and self.activity.crm_stale_rows > 0

    @property
    def findings(self) -> int:
        return sum(self.checks.get(status, 0) for status in FINDING_STATUSES)


@dataclass
class ReportData:
    start: dt.date
    end: dt.date
    days: list[Day]
    drops_as_of: dt.date | None
    drops: list[Row] = field(default_factory=list)
    open_failures: list[Row] = field(default_factory=list)
    quarantined: list[Row] = field(default_factory=list)

    @property
    def built_days(self) -> list[Day]:
        return [d for d in self.days if d.built]

    @property
    def is_empty(self) -> bool:
        """Nothing to chart: no built day and no input or check in the range."""
        return not any(d.built or d.checks or d.inputs != DayInputs(d.day) for d in self.days)

    @property
    def days_without_28d(self) -> list[dt.date]:
        """Built days with rows from before the 28-day columns existed (a rebuild fills them)."""
        return [d.day for d in self.days if d.activity is not None and d.activity.rows_without_28d]

    @property
    def latest(self) -> DayActivity | None:
        built = self.built_days
        return built[-1].activity if built else None


def load_report_data(
    warehouse: Warehouse, start: dt.date, end: dt.date, top_drops: int = DEFAULT_TOP_DROPS
) -> ReportData:
    """Every number of the report for the inclusive range ``start..end``."""
    bounds = {"date_from": start, "date_to": end}
    activity = {as_date(r["activity_date"]): _activity(r) for r in warehouse.query("report/daily_activity", bounds)}
    inputs = {as_date(r["input_date"]): _inputs(r) for r in warehouse.query("report/input_arrivals", bounds)}
    checks: dict[dt.date, dict[str, int]] = {}
    for row in warehouse.query("report/check_results_per_day", bounds):
        checks.setdefault(as_date(row["check_date"]), {})[str(row["status"])] = int(row["checks"])

    calendar = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
    days = [Day(d, activity.get(d), inputs.get(d, DayInputs(d)), checks.get(d, {})) for d in calendar]
    drops_as_of = max(activity) if activity else None
    drops = (
        warehouse.query("report/week_over_week_drops", {"as_of": drops_as_of, "top_n": top_drops})
        if drops_as_of
        else []
    )
    return ReportData(
        start=start,
        end=end,
        days=days,
        drops_as_of=drops_as_of,
        drops=drops,
        open_failures=warehouse.query("report/open_check_failures", bounds),
        quarantined=warehouse.query("ops/date_status__quarantine", bounds),
    )


def _activity(row: Row) -> DayActivity:
    return DayActivity(
        day=as_date(row["activity_date"]),
        row_count=int(row["row_count"]),
        active_users=int(row["active_users"]),
        events=int(row["events"]),
        active_users_7d_avg=float(row["active_users_7d_avg"]),
        active_users_28d_avg=_float_or_none(row["active_users_28d_avg"]),
        events_7d_avg=float(row["events_7d_avg"]),
        events_28d_avg=_float_or_none(row["events_28d_avg"]),
        rows_without_28d=int(row["rows_without_28d"]),
        churn_risk_companies=int(row["churn_risk_companies"]),
        flagged_rows=int(row["flagged_rows"]),
        crm_stale_rows=int(row["crm_stale_rows"]),
        crm_snapshot_date=as_date(row["crm_snapshot_date"]) if row["crm_snapshot_date"] else None,
    )


def _inputs(row: Row) -> DayInputs:
    return DayInputs(
        day=as_date(row["input_date"]),
        crm_staged_at=row["crm_staged_at"],
        crm_rows=_int_or_none(row["crm_rows"]),
        crm_hours_after_day_end=_float_or_none(row["crm_hours_after_day_end"]),
        usage_staged_at=row["usage_staged_at"],
        usage_rows=_int_or_none(row["usage_rows"]),
        usage_hours_after_day_end=_float_or_none(row["usage_hours_after_day_end"]),
        quarantined_files=int(row["quarantined_files"]),
    )


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)
