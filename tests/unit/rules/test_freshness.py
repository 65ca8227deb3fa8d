"""Input freshness decisions: due at the day's end plus the deadline, a miss alerted once."""

from __future__ import annotations

import datetime as dt

from shared.rules.freshness import Freshness, evaluate, evaluate_all, lag_hours, mark_alerted, newly_resolved

D = dt.date(2025, 3, 9)
DUE = dt.datetime(2025, 3, 11, 6, 0)  # D ends 03-10 00:00, +30 h
HOURS = 30.0


def test_before_the_deadline_an_absent_input_is_waiting() -> None:
    state = evaluate(D, "crm", None, None, DUE - dt.timedelta(minutes=1), HOURS)
    assert (state.status, state.due_at, state.first_missed_at, state.needs_alert) == ("waiting", DUE, None, False)


def test_past_the_deadline_an_absent_input_is_missing_and_needs_one_alert() -> None:
    now = DUE + dt.timedelta(minutes=1)
    state = evaluate(D, "crm", None, None, now, HOURS)
    assert (state.status, state.first_missed_at, state.needs_alert) == ("missing", now, True)
    [alerted] = mark_alerted([state], {state.key}, now)
    later = evaluate(D, "crm", None, alerted, now + dt.timedelta(days=1), HOURS)
    assert later.first_missed_at == now and later.alerted_at == now and not later.needs_alert


def test_arrival_by_the_deadline_is_on_time_and_after_it_late() -> None:
    assert evaluate(D, "usage", DUE, None, DUE, HOURS).status == "on_time"
    assert (
        evaluate(D, "usage", DUE + dt.timedelta(seconds=1), None, DUE + dt.timedelta(hours=1), HOURS).status == "late"
    )


def test_a_missed_input_that_arrives_is_resolved_once() -> None:
    missed_at = DUE + dt.timedelta(hours=1)
    missed = Freshness(D, "crm", "missing", DUE, None, missed_at, missed_at, None)
    now = DUE + dt.timedelta(hours=5)
    resolved = evaluate(D, "crm", now - dt.timedelta(minutes=3), missed, now, HOURS)
    assert (resolved.status, resolved.resolved_at, resolved.alerted_at) == ("late", now, missed_at)
    assert newly_resolved([resolved], now) == [resolved]
    again = evaluate(D, "crm", resolved.arrived_at, resolved, now + dt.timedelta(days=1), HOURS)
    assert again.resolved_at == now and newly_resolved([again], now + dt.timedelta(days=1)) == []


def test_every_input_of_every_date_is_evaluated_in_date_order() -> None:
    states = evaluate_all([D, D - dt.timedelta(days=1)], {}, {}, DUE, HOURS)
    assert [(s.activity_date, s.input_name) for s in states] == [
        (D - dt.timedelta(days=1), "crm"),
        (D - dt.timedelta(days=1), "usage"),
        (D, "crm"),
        (D, "usage"),
    ]


def test_lag_counts_from_the_end_of_the_day_after_the_newest_arrival() -> None:
    dates = [D - dt.timedelta(days=2), D - dt.timedelta(days=1), D]
    arrived = {(D - dt.timedelta(days=2), "crm"): DUE, (D, "usage"): DUE}
    now = dt.datetime(2025, 3, 10, 7, 30)  # D is yesterday
    # CRM arrived up to D-2: D-1 ended 03-09 00:00, 31.5 h ago. Usage arrived for D: up to date.
    assert lag_hours(dates, arrived, "crm", now) == 31.5
    assert lag_hours(dates, arrived, "usage", now) == 0.0
    assert lag_hours(dates, {}, "crm", now) == (now - dt.datetime(2025, 3, 8)).total_seconds() / 3600
