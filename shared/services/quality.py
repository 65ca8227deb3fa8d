"""Data-quality checks run after each build, stored in ops, flagged on rows, alerted.

A check is one SQL file under ``sql/checks/`` (the SQLMesh-audit / dbt-test shape): its named
steps find the offending rows or measure a value, and its final select summarises them in
exactly one row (``observed_value, threshold, offending_rows, is_violation, reference_value,
note``), so a passing check still records what it observed. A violation takes the check's severity:
``fail`` or ``warn``. A check that cannot run is recorded as ``error`` and alerted, without
failing the build it follows.

``run_checks`` evaluates the checks for the built dates, replaces the run's results in
``ops.data_quality_results``, sets each failing check's ``dq_<check>`` flag on the date's
analytics rows (and clears it when the check passes again; only the flags column changes,
nothing is deleted), and sends one alert per violated check.

Freshness needs a clock to matter: after a build it can only pass (the inputs just arrived);
the usage timer evaluates it on its schedule (shared/services/freshness.py, ops.input_freshness).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from shared import telemetry
from shared.adapters.warehouse.base import Warehouse
from shared.clock import naive_utc
from shared.errors import BuildError, TranslationError
from shared.logs import log_context
from shared.services.alerts import Alert, AlertSink, new_alert, send_safely
from shared.settings import Settings

log = logging.getLogger(__name__)

Severity = Literal["fail", "warn"]
CheckStatus = Literal["pass", "warn", "fail", "error"]
FLAG_PREFIX = "dq_"
FLAG_SEPARATOR = ","
QUALITY_STEP = "quality"
_RESULT_COLUMNS = (
    "run_id",
    "check_date",
    "check_name",
    "severity",
    "status",
    "observed_value",
    "threshold",
    "offending_rows",
    "reference_value",
    "note",
    "message",
    "checked_at",
)
_DATES_IN_ALERT = 5


@dataclass(frozen=True)
class Observation:
    """The summary row a check query returns."""

    observed_value: float | None
    threshold: float | None
    offending_rows: int | None
    is_violation: bool
    reference_value: float | None
    note: str | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Observation:
        return cls(
            observed_value=_float(row.get("observed_value")),
            threshold=_float(row.get("threshold")),
            offending_rows=None if row.get("offending_rows") is None else int(row["offending_rows"]),
            is_violation=bool(row.get("is_violation")),
            reference_value=_float(row.get("reference_value")),
            note=row.get("note"),
        )


@dataclass(frozen=True)
class Check:
    """A named check: its SQL file is ``sql/checks/<query>.sql``, ``<name>.sql`` when it has
    one of its own. ``name`` is what ops.data_quality_results and the ``dq_`` flags record."""

    name: str
    severity: Severity
    explain: Callable[[Observation], str]
    parameters: Callable[[Settings, dt.datetime], dict[str, Any]] = field(default=lambda settings, now: {})
    query: str | None = None

    @property
    def sql_file(self) -> str:
        return f"checks/{self.query or self.name}"

    @property
    def flag(self) -> str:
        return f"{FLAG_PREFIX}{self.name}"


@dataclass(frozen=True)
class CheckResult:
    check_name: str
    check_date: dt.date
    severity: Severity
    status: CheckStatus
    message: str
    observed_value: float | None = None
    threshold: float | None = None
    offending_rows: int | None = None
    reference_value: float | None = None
    note: str | None = None

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    @property
    def flag(self) -> str:
        return f"{FLAG_PREFIX}{self.check_name}"


# ---- messages: counts and shares only, never row values ---------------------------------------
def _count(value: float | int | None) -> str:
    return "?" if value is None else f"{value:,.0f}"


def _share(value: float | None) -> str:
    return "?" if value is None else f"{value:.1%}"


def _explain_row_count(o: Observation) -> str:
    return "no analytics rows for the date" if o.is_violation else f"{_count(o.observed_value)} analytics rows"


def _explain_row_drop(o: Observation) -> str:
    if o.note == "no_history":
        return "no analytics rows in the 7 days before: nothing to compare with"
    days = (o.note or "").removeprefix("history_days=")
    change = -(o.observed_value or 0.0)
    return (
        f"{_count((o.reference_value or 0) - (o.offending_rows or 0))} rows versus a median of "
        f"{_count(o.reference_value)} over the previous {days} day(s): {change:+.1%} "
        f"(fails below -{_share(o.threshold)})"
    )


def _explain_api_total(o: Observation) -> str:
    if o.note == "no_usage_pull":
        return "no usage pull recorded for the date"
    return (
        f"API returned {_count(o.reference_value)} records; {_count(o.offending_rows)} not accounted for "
        f"by staged, rejected and repeated records ({o.observed_value or 0:.2%}, tolerance {o.threshold or 0:.2%})"
    )


def _explain_unknown_companies(o: Observation) -> str:
    snapshot = "no CRM snapshot" if o.note == "no_crm_snapshot" else (o.note or "").replace("=", " ")
    return (
        f"{_count(o.offending_rows)} of {_count(o.reference_value)} usage rows ({_share(o.observed_value)}) are "
        f"for companies unknown to CRM ({snapshot}; warns above {_share(o.threshold)})"
    )


def _explain_freshness(o: Observation) -> str:
    hours = f"{o.observed_value or 0:.1f} h after the day ended, deadline {o.threshold or 0:g} h"
    if not o.note:
        return f"CRM and usage inputs staged ({hours})"
    missing = o.note.removeprefix("missing=").replace(",", " and ")
    return f"{missing} input missing ({hours})" if o.is_violation else f"waiting for {missing} input ({hours})"


def _explain_duplicates(o: Observation) -> str:
    if not o.is_violation:
        return "one row per company"
    return (
        f"{_count(o.observed_value)} company key(s) appear more than once across {_count(o.offending_rows)} rows "
        "(compared exactly except for trailing spaces, as Azure SQL compares the binary-collated ids)"
    )


def _explain_impossible_counts(o: Observation) -> str:
    if not o.is_violation:
        return "all counts possible"
    return f"{_count(o.offending_rows)} rows with a negative count or more than 7 active days in 7"


def _explain_events_without_users(o: Observation) -> str:
    return f"{_count(o.offending_rows)} of {_count(o.reference_value)} rows have events but no active users"


def _explain_events_reconciliation(o: Observation) -> str:
    if o.note == "no_rollup":
        return "no events rollup for the date: nothing to reconcile"
    return (
        f"{_count(o.offending_rows)} of {_count(o.reference_value)} company-days differ between the events rollup "
        f"and the API by more than {_share(o.threshold)} (largest difference {_share(o.observed_value)})"
    )


def _duplicate_keys(key_set: Literal["stg_usage", "stg_crm", "analytics"]) -> Check:
    """One check definition (checks/duplicate_keys.sql) for the three tables keyed by company and
    date; each keeps its own name, ``<key_set>_duplicate_keys``."""
    return Check(
        f"{key_set}_duplicate_keys",
        "fail",
        _explain_duplicates,
        lambda settings, now: {"key_set": key_set},
        query="duplicate_keys",
    )


CHECKS: tuple[Check, ...] = (
    Check("analytics_row_count", "fail", _explain_row_count),
    Check(
        "analytics_row_drop",
        "fail",
        _explain_row_drop,
        lambda settings, now: {"threshold": settings.quality_row_drop_threshold},
    ),
    Check(
        "usage_api_total",
        "fail",
        _explain_api_total,
        lambda settings, now: {"tolerance": settings.quality_api_total_tolerance},
    ),
    _duplicate_keys("stg_usage"),
    _duplicate_keys("stg_crm"),
    _duplicate_keys("analytics"),
    Check(
        "unknown_company_usage",
        "warn",
        _explain_unknown_companies,
        lambda settings, now: {"threshold": settings.quality_unknown_company_share_warn},
    ),
    Check(
        "input_freshness",
        "fail",
        _explain_freshness,
        lambda settings, now: {"now": now, "deadline_hours": settings.freshness_deadline_hours},
    ),
    Check("activity_negative_counts", "fail", _explain_impossible_counts),
    Check("activity_events_without_users", "warn", _explain_events_without_users),
    Check(
        "events_reconciliation",
        "warn",
        _explain_events_reconciliation,
        lambda settings, now: {"tolerance": settings.events_reconciliation_tolerance},
    ),
)


def checks_named(*names: str) -> tuple[Check, ...]:
    """A subset of CHECKS by name (e.g. only input_freshness from the timer)."""
    by_name = {check.name: check for check in CHECKS}
    unknown = sorted(set(names) - by_name.keys())
    if unknown:
        raise ValueError(f"unknown data-quality checks: {unknown}")
    return tuple(by_name[name] for name in names)


# ---- entry point ------------------------------------------------------------------------------
def run_checks(
    warehouse: Warehouse,
    dates: Iterable[dt.date],
    run_id: str,
    now: dt.datetime,
    settings: Settings,
    alerts: AlertSink,
    checks: Sequence[Check] = CHECKS,
) -> list[CheckResult]:
    """Evaluate ``checks`` for ``dates``; store, flag and alert. Returns every result."""
    now = naive_utc(now)
    with log_context(run_id=run_id, step=QUALITY_STEP):
        results = [
            evaluate(warehouse, check, check_date, now, settings)
            for check_date in sorted(set(dates))
            for check in checks
        ]
        with warehouse.transaction():
            store_results(warehouse, results, run_id, now)
            apply_quality_flags(warehouse, results)
        for result in results:
            if result.status == "fail":
                telemetry.CHECKS_FAILED.add(1, {"check": result.check_name})
            if not result.passed:
                log.warning(
                    "data-quality %s: %s on %s: %s", result.status, result.check_name, result.check_date, result.message
                )
        log.info(
            "data-quality checks: %d results for %d date(s), %d not passing",
            len(results),
            len({r.check_date for r in results}),
            sum(not r.passed for r in results),
        )
        for alert in quality_alerts(results, settings.pipeline_name, run_id):
            send_safely(alerts, alert)
    return results


def evaluate(
    warehouse: Warehouse, check: Check, check_date: dt.date, now: dt.datetime, settings: Settings
) -> CheckResult:
    """Run one check for one date. A check that cannot run yields status ``error``."""
    params = {"check_date": check_date, **check.parameters(settings, now)}
    try:
        rows = warehouse.run(check.sql_file, params)
    except (BuildError, TranslationError) as exc:
        # The engine's text may quote row values: keep the type; rerun the check to see more.
        log.error("data-quality check %s could not run for %s (%s)", check.name, check_date, type(exc).__name__)
        return CheckResult(
            check.name, check_date, check.severity, "error", f"check could not run ({type(exc).__name__})"
        )
    if len(rows) != 1:
        return CheckResult(
            check.name, check_date, check.severity, "error", f"check returned {len(rows)} rows instead of one"
        )
    observation = Observation.from_row(rows[0])
    return CheckResult(
        check_name=check.name,
        check_date=check_date,
        severity=check.severity,
        status=check.severity if observation.is_violation else "pass",
        message=check.explain(observation),
        observed_value=observation.observed_value,
        threshold=observation.threshold,
        offending_rows=observation.offending_rows,
        reference_value=observation.reference_value,
        note=observation.note,
    )


# ---- storing and flagging ---------------------------------------------------------------------
def store_results(warehouse: Warehouse, results: Sequence[CheckResult], run_id: str, checked_at: dt.datetime) -> int:
    """Replace this run's results for the checked dates (a redelivered run does not add rows)."""
    for check_date in sorted({r.check_date for r in results}):
        warehouse.run("ops/data_quality_results__clear", {"run_id": run_id, "check_date": check_date})
    rows = (
        (
            run_id,
            r.check_date,
            r.check_name,
            r.severity,
            r.status,
            r.observed_value,
            r.threshold,
            r.offending_rows,
            r.reference_value,
            r.note,
            r.message[:2000],
            checked_at,
        )
        for r in results
    )
    return warehouse.bulk_load("ops.data_quality_results", _RESULT_COLUMNS, rows)


def apply_quality_flags(warehouse: Warehouse, results: Sequence[CheckResult]) -> int:
    """Add ``dq_<check>`` to the date's rows for each failing check; remove it for each check
    that now passes or only warns (a check that errored leaves its flag as it was).

    Returns how many flag lists changed. A date has few distinct flag lists, so each is merged
    here and rewritten by one set-based UPDATE.
    """
    changed = 0
    for check_date in sorted({r.check_date for r in results}):
        of_date = [r for r in results if r.check_date == check_date]
        add = {r.flag for r in of_date if r.status == "fail"}
        remove = {r.flag for r in of_date if r.status in ("pass", "warn")}
        flag_sets = warehouse.run("analytics/company_daily_activity__quality_flag_sets", {"activity_date": check_date})
        for row in flag_sets:
            old_flags = row["data_quality_flags"]
            if old_flags is None:
                continue  # the column is NOT NULL; nothing to match on
            new_flags = merge_flags(old_flags, add=add, remove=remove)
            if new_flags != old_flags:
                warehouse.run(
                    "analytics/company_daily_activity__replace_quality_flags",
                    {"activity_date": check_date, "old_flags": old_flags, "new_flags": new_flags},
                )
                changed += 1
    return changed


def merge_flags(existing: str, add: Iterable[str] = (), remove: Iterable[str] = ()) -> str:
    """A flag list with ``add`` added and ``remove`` removed: sorted, de-duplicated, comma-separated."""
    flags = {flag.strip() for flag in existing.split(FLAG_SEPARATOR) if flag.strip()}
    flags = (flags | set(add)) - set(remove)
    return FLAG_SEPARATOR.join(sorted(flags))


# ---- alerts -----------------------------------------------------------------------------------
def quality_alerts(results: Sequence[CheckResult], pipeline: str, run_id: str) -> list[Alert]:
    """One alert per check that did not pass, covering all of its dates in this run.

    Per check rather than per (check, date), so a backfill of a year raises a handful of
    alerts, not thousands; the date is set when only one date is involved, which is what
    the de-duplication key uses.
    """
    by_check: dict[str, list[CheckResult]] = {}
    for result in results:
        if not result.passed:
            by_check.setdefault(result.check_name, []).append(result)
    alerts = []
    for check_name, failing in by_check.items():
        failing.sort(key=lambda r: r.check_date)
        status = _worst_status(failing)
        dates = [r.check_date for r in failing]
        shown = "; ".join(f"{r.check_date}: {r.message}" for r in failing[:_DATES_IN_ALERT])
        more = len(failing) - _DATES_IN_ALERT
        alerts.append(
            new_alert(
                pipeline,
                QUALITY_STEP,
                "warning" if status == "warn" else "error",
                f"data-quality check {check_name}: {status}",
                shown + (f"; and {more} more date(s)" if more > 0 else ""),
                run_id=run_id,
                dates=dates,
                facts={
                    "Check": check_name,
                    "Status": status,
                    "Dates": dates[0].isoformat()
                    if len(dates) == 1
                    else f"{dates[0]}..{dates[-1]} ({len(dates)} dates)",
                    "Observed": _fact_number(failing[0].observed_value),
                    "Threshold": _fact_number(failing[0].threshold),
                    "Results": f"ops.data_quality_results run_id={run_id}",
                },
            )
        )
    return alerts


def _worst_status(results: Sequence[CheckResult]) -> CheckStatus:
    statuses = {r.status for r in results}
    for status in ("error", "fail", "warn"):
        if status in statuses:
            return status
    return "pass"


def _fact_number(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _float(value: Any) -> float | None:
    return None if value is None else float(value)
