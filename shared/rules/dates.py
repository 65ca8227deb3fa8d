"""Which UTC days one usage tick pulls: a pure function of (today, watermarks, settings).

A tick pulls
- yesterday (the newest complete UTC day),
- the look-back window (``lookback_days`` before yesterday), re-pulled on every tick because
  the API corrects recent days late,
- every day without a successful pull since the first day the pipeline pulled or tried to pull
  (a missed tick, a date whose pull failed, an outage), at most ``max_catchup_days`` back from
  yesterday. Older gaps are reported, not pulled: a long outage is the CLI backfill's job, not a
  surprise 300-day timer run.

With no watermark at all (first deployment) only yesterday and the look-back are pulled: the
history before the pipeline existed is loaded on purpose, with the backfill command.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from shared.errors import FutureDateRefused

PullReason = Literal["yesterday", "lookback", "catchup"]


@dataclass(frozen=True)
class PullPlan:
    """The days to pull, oldest first, why each is pulled, and the missed days left out."""

    dates: tuple[dt.date, ...]
    reasons: dict[dt.date, PullReason]
    missed_beyond_bound: tuple[dt.date, ...]  # gaps older than the catch-up bound: backfill them


def as_date(value: Any) -> dt.date:
    """A DATE read back from the warehouse: DuckDB gives a date, a driver may give a datetime or
    ISO text (a datetime is a date too, so it is checked first)."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


def describe_dates(dates: Sequence[dt.date]) -> str:
    """Dates for a log line, run note or alert: one date, or ``first..last (n dates)``."""
    if not dates:
        return "-"
    if len(dates) == 1:
        return dates[0].isoformat()
    return f"{dates[0].isoformat()}..{dates[-1].isoformat()} ({len(dates)} dates)"


def utc_day_of(now: dt.datetime) -> dt.date:
    """The UTC day of ``now``; a naive datetime is taken as UTC (the pipeline's convention)."""
    if now.tzinfo is not None:
        now = now.astimezone(dt.UTC)
    return now.date()


def last_buildable_date(now: dt.datetime) -> dt.date:
    """Yesterday (UTC): the newest day whose inputs can be complete. No later day is ever built."""
    return utc_day_of(now) - dt.timedelta(days=1)


def refuse_future_dates(dates: Iterable[dt.date], now: dt.datetime) -> None:
    """Raise ``FutureDateRefused`` naming the first date after yesterday (UTC), if any.

    The one rule every entry point applies (queue messages, CLI commands, replay), so a build
    can never invent rows for a day whose inputs cannot exist yet."""
    limit = last_buildable_date(now)
    future = sorted(day for day in dates if day > limit)
    if future:
        raise FutureDateRefused(
            f"{future[0].isoformat()} is in the future: the latest date that can be built is "
            f"{limit.isoformat()} (yesterday, UTC)"
        )


def plan_pulls(
    today: dt.date,
    pulled: Collection[dt.date],
    *,
    lookback_days: int,
    max_catchup_days: int,
    failed: Collection[dt.date] = (),
) -> PullPlan:
    """The days a tick running on ``today`` must pull, given the days already pulled successfully
    and the days whose pulls failed and never succeeded. Failed days mark where history starts
    too: a failed first pull must not be forgotten."""
    if lookback_days < 0 or max_catchup_days < 1:
        raise ValueError("lookback_days must be >= 0 and max_catchup_days >= 1")
    yesterday = today - dt.timedelta(days=1)
    reasons: dict[dt.date, PullReason] = {yesterday: "yesterday"}
    for back in range(1, lookback_days + 1):
        reasons[yesterday - dt.timedelta(days=back)] = "lookback"

    missed = _missed_days(yesterday, pulled, failed)
    oldest_allowed = yesterday - dt.timedelta(days=max_catchup_days - 1)
    for day in missed:
        if day >= oldest_allowed:
            reasons.setdefault(day, "catchup")
    beyond = tuple(day for day in missed if day < oldest_allowed)
    return PullPlan(dates=tuple(sorted(reasons)), reasons=reasons, missed_beyond_bound=beyond)


def _missed_days(yesterday: dt.date, pulled: Collection[dt.date], failed: Collection[dt.date]) -> list[dt.date]:
    """Days from the first pull (or attempt) up to yesterday that have no successful pull."""
    history = [day for day in (*pulled, *failed) if day <= yesterday]
    if not history:
        return []
    done = set(pulled)
    first = min(history)
    span = (yesterday - first).days
    return [day for day in (first + dt.timedelta(days=i) for i in range(span + 1)) if day not in done]
