"""Input freshness on the timer's schedule: a missing input alerts once per (date, input).

The build-time check (sql/checks/input_freshness.sql) can only pass — a build runs because its
inputs arrived — so the usage timer calls ``evaluate_on_schedule`` after every tick. For the
``FRESHNESS_LOOKBACK_DAYS`` dates up to yesterday (UTC) — none before the first date any input
ever arrived for — it reads when each input arrived and
what the previous tick stored in ``ops.input_freshness``, decides (shared/rules/freshness.py),
sends one alert per input listing the dates newly found missing past the deadline, stores the
states with ``alerted_at`` set, and sends a resolved notice when a missed input arrives. It also
records the ``pipeline.input.freshness_lag`` gauge per input. An alert that could not be sent
leaves ``alerted_at`` empty, so the next tick tries again.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any

from shared import telemetry
from shared.adapters.warehouse.base import Warehouse
from shared.clock import naive_utc
from shared.logs import log_context, new_run_id
from shared.rules.dates import as_date, last_buildable_date
from shared.rules.freshness import (
    INPUTS,
    Freshness,
    evaluate_all,
    lag_hours,
    mark_alerted,
    newly_resolved,
)
from shared.rules.readiness import InputName
from shared.services.alerts import Alert, AlertSink, failure_alert, new_alert, send_safely
from shared.services.resources import StepResources
from shared.services.run_history import record_run
from shared.settings import Settings

log = logging.getLogger(__name__)

STEP = "freshness"
TABLE = "ops.input_freshness"
_COLUMNS = (
    "activity_date",
    "input_name",
    "status",
    "due_at",
    "arrived_at",
    "first_missed_at",
    "alerted_at",
    "resolved_at",
    "checked_at",
    "run_id",
)
_DESCRIBE = {"crm": "CRM snapshot file", "usage": "usage pull"}


def evaluate_on_schedule(
    resources: StepResources, now: dt.datetime, run_id: str | None = None
) -> list[Freshness] | None:
    """The timer's call: never fails the tick; a failure is logged and alerted."""
    try:
        return evaluate_freshness(resources.warehouse, resources.alerts, resources.settings, now, run_id)
    except Exception as exc:
        log.error("input freshness could not be evaluated (%s)", type(exc).__name__)
        send_safely(resources.alerts, failure_alert(resources.settings.pipeline_name, STEP, exc))
        return None


def evaluate_freshness(
    warehouse: Warehouse,
    alerts: AlertSink,
    settings: Settings,
    now: dt.datetime,
    run_id: str | None = None,
) -> list[Freshness]:
    """Evaluate, alert and store the freshness of the recent dates (see module doc)."""
    run_id = run_id or new_run_id()
    now = naive_utc(now)
    dates = dates_to_evaluate(warehouse, now, settings.freshness_lookback_days)
    if not dates:
        log.info("input freshness: no input has ever arrived, nothing to evaluate yet")
        return []
    params = {"date_from": dates[0], "date_to": dates[-1]}
    with (
        log_context(run_id=run_id, step=STEP),
        telemetry.span(
            "freshness.evaluate", attributes={"freshness.date_from": dates[0], "freshness.date_to": dates[-1]}
        ),
        record_run(warehouse, step=STEP, run_id=run_id) as run,
    ):
        arrivals = {
            (as_date(r["activity_date"]), r["input_name"]): r["arrived_at"]
            for r in warehouse.run("ops/input_freshness__arrivals", params)
        }
        previous = {s.key: s for s in (_from_row(r) for r in warehouse.run("ops/input_freshness__for_range", params))}
        states = evaluate_all(dates, arrivals, previous, now, settings.freshness_deadline_hours)
        alerted = _alert_missing([s for s in states if s.needs_alert], alerts, settings, run_id)
        states = mark_alerted(states, alerted, now)
        with warehouse.transaction():
            warehouse.run("ops/input_freshness__clear_range", params)
            warehouse.bulk_load(TABLE, _COLUMNS, (_to_row(s, now, run_id) for s in states))
        for state in newly_resolved(states, now):
            send_safely(alerts, _resolved_notice(state, settings, run_id))
        for name in INPUTS:
            telemetry.FRESHNESS_LAG.set(lag_hours(dates, arrivals, name, now), {"input": name})
        missing = [s for s in states if s.status == "missing"]
        run.rows_in, run.rows_out = len(states), len(alerted)
        log.info(
            "input freshness of %s..%s: %d missing past the deadline (%d newly alerted), %d waiting",
            dates[0],
            dates[-1],
            len(missing),
            len(alerted),
            sum(s.status == "waiting" for s in states),
        )
    return states


def dates_to_evaluate(warehouse: Warehouse, now: dt.datetime, lookback_days: int) -> list[dt.date]:
    """The ``lookback_days`` dates up to yesterday, from the first date the pipeline ever received
    an input (a new deployment is not alerted for the days before it existed)."""
    last = last_buildable_date(now)
    first_input = warehouse.run("ops/input_freshness__first_input_date")[0]["first_input_date"]
    if first_input is None:
        return []
    first = max(as_date(first_input), last - dt.timedelta(days=lookback_days - 1))
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def _alert_missing(
    missing: Sequence[Freshness], alerts: AlertSink, settings: Settings, run_id: str
) -> set[tuple[dt.date, InputName]]:
    """One alert per input listing its newly missing dates (an outage is one incident, not one
    per day). Returns the (date, input) keys whose alert was sent."""
    sent: set[tuple[dt.date, InputName]] = set()
    for name in INPUTS:
        of_input = sorted((s for s in missing if s.input_name == name), key=lambda s: s.activity_date)
        if not of_input:
            continue
        dates = [s.activity_date for s in of_input]
        listed = ", ".join(d.isoformat() for d in dates)
        alert = new_alert(
            settings.pipeline_name,
            STEP,
            "error",
            f"{name} input missing past its deadline",
            f"No {_DESCRIBE[name]} for {listed}, {settings.freshness_deadline_hours:g} h after the day ended "
            f"(FRESHNESS_DEADLINE_HOURS); {TABLE} tracks it until it arrives.",
            run_id=run_id,
            dates=dates,
            subject=name,
            facts={"Input": name, "Dates": listed, "State": f"{TABLE}"},
        )
        try:
            alerts.send(alert)
        except Exception as exc:  # not marked alerted: the next tick tries again
            log.error("freshness alert for %s could not be sent (%s)", name, type(exc).__name__)
            continue
        sent.update(s.key for s in of_input)
    return sent


def _resolved_notice(state: Freshness, settings: Settings, run_id: str) -> Alert:
    arrived = state.arrived_at.isoformat(timespec="minutes") if state.arrived_at else "?"
    return new_alert(
        settings.pipeline_name,
        STEP,
        "info",
        f"{state.input_name} input arrived (resolved)",
        f"The {_DESCRIBE[state.input_name]} of {state.activity_date.isoformat()} arrived at {arrived} UTC, "
        f"after its deadline ({state.due_at.isoformat(timespec='minutes')} UTC).",
        run_id=run_id,
        dates=[state.activity_date],
        subject=state.input_name,
    )


def _to_row(state: Freshness, checked_at: dt.datetime, run_id: str) -> tuple[Any, ...]:
    return (
        state.activity_date,
        state.input_name,
        state.status,
        state.due_at,
        state.arrived_at,
        state.first_missed_at,
        state.alerted_at,
        state.resolved_at,
        checked_at,
        run_id,
    )


def _from_row(row: dict[str, Any]) -> Freshness:
    return Freshness(
        activity_date=as_date(row["activity_date"]),
        input_name=row["input_name"],
        status=row["status"],
        due_at=row["due_at"],
        arrived_at=row["arrived_at"],
        first_missed_at=row["first_missed_at"],
        alerted_at=row["alerted_at"],
        resolved_at=row["resolved_at"],
    )
