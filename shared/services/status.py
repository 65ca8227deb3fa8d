"""The status report of dates (``status``): inputs, last build, checks, quarantine, recovery.

Read only. With the readiness gate the report adds each date's gate state, and "up to date"
means what the builder means; a diagnostic must also work when storage does not, so without a
reachable gate the report says less instead of failing.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from shared.adapters.warehouse.base import Row, Warehouse
from shared.clock import Clock, utc_now
from shared.errors import PipelineError
from shared.rules.build_plan import InputVersions, plan_build
from shared.rules.date_ranges import DateRange
from shared.rules.dates import refuse_future_dates
from shared.rules.json_report import iso, json_safe
from shared.services.resources import HasReadiness, HasWarehouse

log = logging.getLogger(__name__)


class StatusResources(HasWarehouse, HasReadiness, Protocol):
    """What the status report reads."""


def status_of(resources: StatusResources, dates: DateRange, clock: Clock = utc_now) -> list[DateReport]:
    """The report of ``dates``; without the readiness state when the state table is unreachable."""
    refuse_future_dates(dates.days(), clock())
    gate: GateView | None
    try:
        gate = resources.readiness
        gate.input_versions([dates.start])  # a probe: is the state table configured and reachable?
    except PipelineError as exc:
        log.warning("status without the readiness state (%s: %s)", type(exc).__name__, exc)
        gate = None
    return date_reports(resources.warehouse, dates, gate)


class GateView(Protocol):
    """What the reports read from the readiness gate (shared.services.readiness.ReadinessGate)."""

    def input_versions(self, dates: Sequence[dt.date]) -> Mapping[dt.date, InputVersions]: ...

    def state(self, activity_date: dt.date) -> Any | None: ...


@dataclass(frozen=True)
class InputReport:
    """One input of a date: is it staged, which version, how many rows, since when, from where."""

    present: bool
    version: str | None = None
    rows: int | None = None
    at: str | None = None  # when it was staged (ISO-8601, UTC)
    source: str | None = None  # the CRM blob / the raw usage blob
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BuildReport:
    built: bool
    run_id: str | None = None
    rows: int | None = None  # rows written by the last successful build
    current_rows: int = 0  # rows the date holds now (0 after a rollback)
    built_at: str | None = None
    duration_ms: int | None = None
    crm_version: str | None = None
    usage_version: str | None = None
    crm_snapshot_date: str | None = None
    # Built from the versions present now AND its data-quality checks ran after the build: a
    # build whose checks were interrupted is not done (a resumed backfill runs them).
    up_to_date: bool | None = None
    inputs_current: bool | None = None  # versions built == versions present
    checked_at: str | None = None  # the last full check run of the date, after its build


@dataclass(frozen=True)
class ChecksReport:
    run_id: str | None
    failed: list[dict[str, Any]]
    warned: list[dict[str, Any]]
    passed: int
    errored: list[dict[str, Any]]


@dataclass(frozen=True)
class DateReport:
    date: str
    inputs: dict[str, InputReport]
    crm_snapshot_in_force: str | None
    readiness: dict[str, Any] | None
    build: BuildReport
    checks: ChecksReport
    quarantined_files: list[dict[str, Any]]
    # What fault recovery did for the date: abandoned runs, poisoned inputs and their fate.
    recovery: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The machine-readable shape of ``status --json`` (stable keys, JSON-safe values)."""
        return json_safe(asdict(self))


@dataclass(frozen=True)
class DateInputs:
    crm: InputReport
    usage: InputReport
    snapshot_in_force: Row | None
    build: BuildReport


def date_reports(warehouse: Warehouse, dates: DateRange, gate: GateView | None = None) -> list[DateReport]:
    """Per date of ``dates``: inputs, last build, checks and quarantined files.

    With the readiness ``gate`` the report adds each date's gate state, and "up to date" means
    what the builder means: built from the versions the gate holds now. Without it (storage
    unreachable) the versions come from staging, which equal the gate's when both are in step.
    """
    inputs = inputs_and_builds(warehouse, dates, gate)
    quarantined: dict[dt.date, list[Row]] = {}
    params = {"date_from": dates.start, "date_to": dates.end}
    for row in warehouse.run("ops/date_status__quarantine", params):
        quarantined.setdefault(row["snapshot_date"], []).append(row)
    recovery = warehouse.run("ops/date_status__recovery", params)

    report = []
    for day in dates.days():
        known = inputs[day]
        in_force = known.snapshot_in_force
        state = gate.state(day) if gate is not None else None
        report.append(
            DateReport(
                date=day.isoformat(),
                inputs={"crm": known.crm, "usage": known.usage},
                crm_snapshot_in_force=in_force["snapshot_date"].isoformat() if in_force else None,
                readiness=json_safe(asdict(state)) if state is not None else None,
                build=known.build,
                # One small query per date: the quality module's own "latest result per check".
                checks=_checks_report(warehouse.run("ops/data_quality_results__latest_for_date", {"check_date": day})),
                quarantined_files=[_quarantine_entry(r) for r in quarantined.get(day, [])],
                recovery=[
                    json_safe({k: r[k] for k in ("kind", "subject", "status", "at", "note")})
                    for r in recovery
                    if r["date_from"] <= day <= r["date_to"]
                ],
            )
        )
    return report


def inputs_and_builds(warehouse: Warehouse, dates: DateRange, gate: GateView | None) -> dict[dt.date, DateInputs]:
    """Staged inputs and last builds of every date of the range: three set-based queries."""
    params = {"date_from": dates.start, "date_to": dates.end}
    snapshots = warehouse.run("ops/date_status__crm_snapshots", params)
    pulls = {r["activity_date"]: r for r in warehouse.run("ops/date_status__usage_pulls", params)}
    builds = {r["activity_date"]: r for r in warehouse.run("ops/date_status__builds", params)}
    own_snapshot = {r["snapshot_date"]: r for r in snapshots}
    crm = {day: _crm_input(own_snapshot.get(day)) for day in dates.days()}
    usage = {day: _usage_input(pulls.get(day)) for day in dates.days()}
    if gate is not None:
        current = dict(gate.input_versions(dates.days()))
    else:
        current = {day: InputVersions(crm[day].version, usage[day].version) for day in dates.days()}
    built = {
        day: InputVersions(row["crm_version"], row["usage_version"])
        for day, row in builds.items()
        if row["run_id"] is not None
    }
    # The builder's own rule decides "nothing new to build": its plan's unchanged dates.
    unchanged = set(plan_build(dates.days(), current, built).unchanged)
    return {
        day: DateInputs(
            crm[day],
            usage[day],
            _snapshot_in_force(snapshots, day),
            _build_report(builds.get(day), inputs_current=day in unchanged),
        )
        for day in dates.days()
    }


def _snapshot_in_force(snapshots: list[Row], day: dt.date) -> Row | None:
    """The latest snapshot dated on or before ``day`` (rows come sorted by date)."""
    found = None
    for row in snapshots:
        if row["snapshot_date"] <= day:
            found = row
    return found


def _crm_input(row: Row | None) -> InputReport:
    if row is None:
        return InputReport(present=False)
    return InputReport(
        present=True,
        version=row["content_hash"],
        rows=row["row_count"],
        at=iso(row["ingested_at"]),
        source=row["source_blob"],
        details={
            "rejected_rows": row["rejected_row_count"],
            "duplicate_rows": row["duplicate_row_count"],
            "run_id": row["run_id"],
        },
    )


def _usage_input(row: Row | None) -> InputReport:
    if row is None:
        return InputReport(present=False)
    return InputReport(
        present=True,
        version=row["content_hash"],
        rows=row["staged_row_count"],
        at=iso(row["ingested_at"]),
        source=row["raw_blob"],
        details={
            "api_records": row["api_record_count"],
            "rejected_records": row["rejected_record_count"],
            "duplicate_records": row["duplicate_record_count"],
            "fetched_at": iso(row["fetched_at"]),
            "run_id": row["run_id"],
        },
    )


def _build_report(row: Row | None, *, inputs_current: bool) -> BuildReport:
    if row is None or row["run_id"] is None:
        return BuildReport(
            built=False, current_rows=int(row["current_rows"]) if row else 0, up_to_date=False, inputs_current=False
        )
    checked = bool(row["checks_ran"])
    return BuildReport(
        built=True,
        run_id=row["run_id"],
        rows=row["row_count"],
        current_rows=int(row["current_rows"]),
        built_at=iso(row["built_at"]),
        duration_ms=row["duration_ms"],
        crm_version=row["crm_version"],
        usage_version=row["usage_version"],
        crm_snapshot_date=iso(row["crm_snapshot_date"]),
        up_to_date=inputs_current and checked,
        inputs_current=inputs_current,
        checked_at=iso(row["last_checked_at"]) if checked else None,
    )


def _checks_report(rows: list[Row]) -> ChecksReport:
    def brief(row: Row) -> dict[str, Any]:
        return {
            "check": row["check_name"],
            "severity": row["severity"],
            "observed": row["observed_value"],
            "threshold": row["threshold"],
            "message": row["message"],
        }

    by_status: dict[str, list[Row]] = {}
    for row in rows:
        by_status.setdefault(str(row["status"]).lower(), []).append(row)
    return ChecksReport(
        run_id=max((r["run_id"] for r in rows), default=None),
        failed=[brief(r) for r in by_status.get("fail", [])],
        warned=[brief(r) for r in by_status.get("warn", [])],
        passed=len(by_status.get("pass", [])),
        errored=[brief(r) for r in by_status.get("error", [])],
    )


def _quarantine_entry(row: Row) -> dict[str, Any]:
    return {
        "source_blob": row["source_blob"],
        "status": row["status"],
        "reason": row["reason"],
        "rejected_rows": row["rejected_row_count"],
        "quarantine_blob": row["quarantine_blob"],
        "report_blob": row["report_blob"],
        "quarantined_at": iso(row["quarantined_at"]),
    }
