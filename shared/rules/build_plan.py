"""Which dates a build message must (re)build: pure functions, no I/O.

A message asks for some dates. A requested date is rebuilt when its input versions (CRM
snapshot hash, usage pull hash, from the readiness state) differ from those of its last
successful build, or when the message says ``force``. What a changed date alters decides what
else is rebuilt (SPEC 4: "a re-staged input rebuilds every already-built day whose row it
changes"), whatever the order in which inputs arrived:
- usage of D is in the rolling windows of D..D+WINDOW_DAYS-1, so every one of those already
  built is rebuilt too (dates never built are left to their own message);
- usage of D also moves days_since_last_activity and churn's "known since" on built days after
  the windows, however far ahead; the builder asks the warehouse which (``extend_beyond_window``);
- a CRM snapshot staged, replaced or removed for S changes every built day from S up to the
  next snapshot: the builder asks the warehouse which built days' snapshot in force differs from
  the one they were built with (``add_crm_reach``), which also catches what an earlier message
  missed.
A message may be ``affected_only``: the gate sends one when an input of a date changed while
the date itself cannot be built yet (no usage, or CRM still within its grace period); its dates
are then origins of changes, not targets. The targets are grouped into contiguous ranges: the
SQL builds one range in one set-based run.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.errors import MalformedMessage
from shared.rules.date_ranges import contiguous_ranges

# The widest rolling window of a row (the 28-day columns, D-27..D): usage of D reaches D..D+27.
WINDOW_DAYS = 28
MAX_REQUEST_DAYS = 3660  # ten years; the build SQL's day generator reaches 10,000 days
_ALLOWED_KEYS = {
    "dates",
    "start",
    "end",
    "reason",
    "force",
    "affected_only",
    "crm_version",
    "usage_version",
    "traceparent",
}
_TRACEPARENT_MAX = 128  # W3C traceparent is 55 characters; later versions may append fields


@dataclass(frozen=True)
class InputVersions:
    """The versions of a date's two inputs; None when the input is absent (e.g. stale CRM)."""

    crm_version: str | None = None
    usage_version: str | None = None


@dataclass(frozen=True)
class BuildRequest:
    """A validated build message."""

    dates: tuple[dt.date, ...]  # sorted, unique
    reason: str = ""
    force: bool = False
    affected_only: bool = False  # rebuild what these dates' inputs alter, not the dates themselves
    # W3C trace context of the span that queued the message (absent in older messages): the
    # build's trace links to it.
    traceparent: str | None = None


@dataclass(frozen=True)
class BuildPlan:
    """What one message will do, and why (for logs and the run record)."""

    changed: tuple[dt.date, ...]  # requested dates whose inputs changed (or forced)
    neighbours: tuple[dt.date, ...]  # already-built dates whose windows include a changed date
    unchanged: tuple[dt.date, ...]  # requested dates skipped: same versions as their last build
    ranges: tuple[tuple[dt.date, dt.date], ...] = field(default=())
    beyond_window: tuple[dt.date, ...] = ()  # later built dates whose last/first activity moved
    crm_reach: tuple[dt.date, ...] = ()  # built dates whose CRM snapshot in force changed
    affected_only: bool = False  # the changed dates are origins only, not rebuilt themselves

    @property
    def rebuilt_changed(self) -> tuple[dt.date, ...]:
        """The changed dates that are targets themselves."""
        return () if self.affected_only else self.changed

    @property
    def targets(self) -> tuple[dt.date, ...]:
        return tuple(sorted({*self.rebuilt_changed, *self.neighbours, *self.beyond_window, *self.crm_reach}))


def parse_build_request(payload: Any) -> BuildRequest:
    """Validate a decoded message: ``{"dates": [...]}`` or ``{"start": ..., "end": ...}``.

    Raises MalformedMessage (never retried) with a message that says what is wrong.
    """
    if not isinstance(payload, dict):
        raise MalformedMessage("build message must be a JSON object")
    unknown = set(payload) - _ALLOWED_KEYS
    if unknown:
        raise MalformedMessage(f"build message has unknown keys {sorted(unknown)}")
    has_dates = "dates" in payload
    has_range = "start" in payload or "end" in payload
    if has_dates == has_range:
        raise MalformedMessage('build message needs either "dates" or "start" and "end"')
    if has_dates:
        raw = payload["dates"]
        if not isinstance(raw, list) or not raw:
            raise MalformedMessage('"dates" must be a non-empty list of YYYY-MM-DD strings')
        if len(raw) > MAX_REQUEST_DAYS:
            raise MalformedMessage(f'"dates" lists {len(raw)} dates; at most {MAX_REQUEST_DAYS}')
        dates = {_parse_date(value, "dates") for value in raw}
    else:
        start, end = _parse_date(payload.get("start"), "start"), _parse_date(payload.get("end"), "end")
        if start > end:
            raise MalformedMessage(f'"start" {start} is after "end" {end}')
        span = (end - start).days + 1
        if span > MAX_REQUEST_DAYS:
            raise MalformedMessage(f"range of {span} days is too large; at most {MAX_REQUEST_DAYS}")
        dates = {start + dt.timedelta(days=i) for i in range(span)}
    force, affected_only = payload.get("force", False), payload.get("affected_only", False)
    if not isinstance(force, bool):
        raise MalformedMessage('"force" must be true or false')
    if not isinstance(affected_only, bool):
        raise MalformedMessage('"affected_only" must be true or false')
    if force and affected_only:
        raise MalformedMessage('"force" and "affected_only" exclude each other')
    reason = payload.get("reason", "")
    if not isinstance(reason, str):
        raise MalformedMessage('"reason" must be a string')
    traceparent = payload.get("traceparent")
    if traceparent is not None and (not isinstance(traceparent, str) or len(traceparent) > _TRACEPARENT_MAX):
        raise MalformedMessage('"traceparent" must be a W3C traceparent string')
    return BuildRequest(
        dates=tuple(sorted(dates)),
        reason=reason[:200],
        force=force,
        affected_only=affected_only,
        traceparent=traceparent,
    )


def plan_build(
    requested: Iterable[dt.date],
    current: Mapping[dt.date, InputVersions],
    built: Mapping[dt.date, InputVersions],
    *,
    force: bool = False,
    affected_only: bool = False,
) -> BuildPlan:
    """Decide the targets of one message (before the warehouse adds later dates).

    ``current``: the readiness state's versions per date (a date missing means no state).
    ``built``: the versions recorded by the last successful build of each built date; it must
    cover the requested dates and the WINDOW_DAYS - 1 days after each. ``affected_only``: the
    changed dates are not built themselves, only what their change reaches.
    """
    requested = sorted(set(requested))
    changed = [d for d in requested if force or d not in built or built[d] != current.get(d, InputVersions())]
    unchanged = [d for d in requested if d not in set(changed)]
    changed_set = set() if affected_only else set(changed)  # dates that are targets anyway
    neighbours = sorted(
        {
            d + dt.timedelta(days=k)
            for d in changed
            for k in range(1, WINDOW_DAYS)
            if d + dt.timedelta(days=k) in built and d + dt.timedelta(days=k) not in changed_set
        }
    )
    plan = BuildPlan(
        changed=tuple(changed),
        neighbours=tuple(neighbours),
        unchanged=tuple(unchanged),
        affected_only=affected_only,
    )
    return dataclasses.replace(plan, ranges=tuple(contiguous_ranges(plan.targets)))


def extend_beyond_window(plan: BuildPlan, later: Iterable[dt.date]) -> BuildPlan:
    """The plan with ``later`` built dates added (those not already targets) and ranges regrouped."""
    extra = sorted(set(later) - set(plan.targets))
    if not extra:
        return plan
    plan = dataclasses.replace(plan, beyond_window=tuple(extra))
    return dataclasses.replace(plan, ranges=tuple(contiguous_ranges(plan.targets)))


def add_crm_reach(plan: BuildPlan, stale: Iterable[dt.date]) -> BuildPlan:
    """The plan with the built dates whose CRM snapshot in force changed (not already targets)."""
    extra = sorted(set(stale) - set(plan.targets))
    if not extra:
        return plan
    plan = dataclasses.replace(plan, crm_reach=tuple(extra))
    return dataclasses.replace(plan, ranges=tuple(contiguous_ranges(plan.targets)))


def split_ranges(ranges: Iterable[tuple[dt.date, dt.date]], max_days: int | None) -> list[tuple[dt.date, dt.date]]:
    """The ranges cut into consecutive pieces of at most ``max_days`` days (None: as they are).

    A piece is what one run of the build SQL computes at once: its memory follows its
    company-days, so a long range is built piece by piece (in the same transaction) instead of
    in one statement whose memory grows with the range.
    """
    if max_days is None:
        return list(ranges)
    return [
        piece
        for first, last in ranges
        for piece in contiguous_ranges((first + dt.timedelta(days=n) for n in range((last - first).days + 1)), max_days)
    ]


def group_ranges(
    ranges: Iterable[tuple[dt.date, dt.date]], max_days: int | None
) -> list[list[tuple[dt.date, dt.date]]]:
    """The ranges, cut to at most ``max_days`` days, packed in order into groups of at most
    ``max_days`` days in all (None: one group): the parts a long build commits one by one."""
    if max_days is None:
        return [list(ranges)]
    groups: list[list[tuple[dt.date, dt.date]]] = []
    room = 0
    for first, last in split_ranges(ranges, max_days):
        days = (last - first).days + 1
        if not groups or days > room:
            groups.append([])
            room = max_days
        groups[-1].append((first, last))
        room -= days
    return groups


def checkpoint_refresh_from(
    stale_from: dt.date | None,
    last_checkpoint: dt.date | None,
    date_to: dt.date,
    *,
    first_pull: dt.date | None,
    last_pull: dt.date | None,
) -> dt.date | None:
    """Where the activity checkpoints must be refreshed from before building up to ``date_to``.

    From the earliest usage date that changed since the last refresh, if any (the refresh also
    extends the checkpoints to ``date_to``'s month). Otherwise only when the checkpoints stop
    before ``date_to``'s month: then they are extended from ``date_to``, which keeps the newest
    existing checkpoint as the base. None: nothing to do, also when the refresh would change
    nothing (the daily build of a month whose checkpoint exists): its two statements cost a
    one-day build about as much as the rest of its bookkeeping. ``first_pull``/``last_pull``:
    the first and last staged usage dates (None: no usage staged).
    """
    if stale_from is None:
        if last_checkpoint is not None and last_checkpoint >= _month(date_to):
            return None
        refresh_from = date_to
    else:
        refresh_from = stale_from
    end_month = _month(max(date_to, last_pull) if last_pull is not None else date_to)
    if _refresh_changes_nothing(refresh_from, last_checkpoint, end_month, first_pull):
        return None
    return refresh_from


def _refresh_changes_nothing(
    refresh_from: dt.date, last_checkpoint: dt.date | None, end_month: dt.date, first_pull: dt.date | None
) -> bool:
    """Whether stg/company_activity_checkpoints__refresh.sql would leave the table as it is.

    It keeps as its base the newest checkpoint at or before ``refresh_from``'s month (none: it
    starts at the first pull's month), deletes every checkpoint after the base and computes
    each month after the base up to ``end_month`` (the month of the last pull or of the build's
    last date). Nothing happens when no checkpoint lies after the base and no month lies
    between the base and ``end_month``.
    """
    if last_checkpoint is None:  # no checkpoint yet: months after the first pull's are computed
        return first_pull is None or _month(first_pull) >= end_month
    return last_checkpoint <= _month(refresh_from) and end_month <= last_checkpoint


def _month(day: dt.date) -> dt.date:
    return day.replace(day=1)


def _parse_date(value: Any, key: str) -> dt.date:
    if not isinstance(value, str):
        raise MalformedMessage(f'"{key}" must be YYYY-MM-DD strings')
    try:
        parsed = dt.date.fromisoformat(value)
    except ValueError:
        raise MalformedMessage(f'"{key}" has a value that is not a YYYY-MM-DD date') from None
    if len(value) != 10:
        raise MalformedMessage(f'"{key}" has a value that is not a YYYY-MM-DD date')
    return parsed
