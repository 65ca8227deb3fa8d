"""Input freshness: pure decisions, no I/O (shared/services/freshness.py is the edge).

An input ("crm": the CRM snapshot dated D; "usage": the usage pull of D) is due when D ends
(midnight UTC) and must have arrived ``deadline_hours`` later. Each tick evaluates the recent
dates from what arrived and what the previous tick stored:

* arrived by the deadline: ``on_time``; arrived after it: ``late``;
* absent before the deadline: ``waiting``; absent after it: ``missing`` — ``first_missed_at``
  is set once and kept, and the miss is alerted while ``alerted_at`` is empty, so a missing
  input alerts once however many ticks find it missing;
* a missed input that arrives is ``late`` with ``resolved_at`` set (once): the resolved notice.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from shared.rules.readiness import InputName

FreshnessStatus = Literal["waiting", "on_time", "late", "missing"]
INPUTS: tuple[InputName, ...] = ("crm", "usage")


@dataclass(frozen=True)
class Freshness:
    """The freshness of one input of one date (a row of ops.input_freshness)."""

    activity_date: dt.date
    input_name: InputName
    status: FreshnessStatus
    due_at: dt.datetime  # the deadline
    arrived_at: dt.datetime | None = None
    first_missed_at: dt.datetime | None = None
    alerted_at: dt.datetime | None = None
    resolved_at: dt.datetime | None = None

    @property
    def key(self) -> tuple[dt.date, InputName]:
        return (self.activity_date, self.input_name)

    @property
    def needs_alert(self) -> bool:
        return self.status == "missing" and self.alerted_at is None


def deadline(day: dt.date, deadline_hours: float) -> dt.datetime:
    """When the inputs of ``day`` must have arrived: its end (UTC) plus the deadline."""
    return day_end(day) + dt.timedelta(hours=deadline_hours)


def day_end(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time())


def evaluate(
    day: dt.date,
    input_name: InputName,
    arrived_at: dt.datetime | None,
    previous: Freshness | None,
    now: dt.datetime,
    deadline_hours: float,
) -> Freshness:
    """The input's freshness now, keeping what earlier ticks recorded about a miss."""
    due = deadline(day, deadline_hours)
    first_missed = previous.first_missed_at if previous else None
    alerted = previous.alerted_at if previous else None
    resolved = previous.resolved_at if previous else None
    if arrived_at is not None:
        status: FreshnessStatus = "on_time" if arrived_at <= due and first_missed is None else "late"
        if first_missed is not None and resolved is None:
            resolved = now
        return Freshness(day, input_name, status, due, arrived_at, first_missed, alerted, resolved)
    if now < due:
        return Freshness(day, input_name, "waiting", due, None, first_missed, alerted, None)
    # Missing (again, after a rollback or a removed snapshot: the miss stays alerted, not re-sent).
    return Freshness(day, input_name, "missing", due, None, first_missed or now, alerted, None)


def evaluate_all(
    dates: Sequence[dt.date],
    arrivals: Mapping[tuple[dt.date, InputName], dt.datetime],
    previous: Mapping[tuple[dt.date, InputName], Freshness],
    now: dt.datetime,
    deadline_hours: float,
) -> list[Freshness]:
    """Every input of every date, in date order."""
    return [
        evaluate(day, name, arrivals.get((day, name)), previous.get((day, name)), now, deadline_hours)
        for day in sorted(dates)
        for name in INPUTS
    ]


def mark_alerted(
    states: Iterable[Freshness], alerted: set[tuple[dt.date, InputName]], now: dt.datetime
) -> list[Freshness]:
    """The states with ``alerted_at`` set for the keys whose alert went out."""
    return [dataclasses.replace(s, alerted_at=now) if s.key in alerted else s for s in states]


def newly_resolved(states: Iterable[Freshness], now: dt.datetime) -> list[Freshness]:
    """Misses that were alerted and whose input arrived in this evaluation."""
    return [s for s in states if s.resolved_at == now and s.alerted_at is not None]


def lag_hours(
    dates: Sequence[dt.date],
    arrivals: Mapping[tuple[dt.date, InputName], dt.datetime],
    input_name: InputName,
    now: dt.datetime,
) -> float:
    """How far behind an input is: hours since the day after its newest arrival ended (0 when
    the newest arrival is the latest day that can exist). Without any arrival among ``dates``,
    counted from the end of the first of them (a lower bound)."""
    present = [day for day in dates if (day, input_name) in arrivals]
    first_awaited = max(present) + dt.timedelta(days=1) if present else min(dates)
    return max(0.0, (now - day_end(first_awaited)).total_seconds() / 3600)
