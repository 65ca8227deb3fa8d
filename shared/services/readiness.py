"""Readiness gate: per-date input state in Table Storage; queues exactly one build per change.

The thin edge around the pure ``decide`` (shared/rules/readiness.py): read the date's entity
with its ETag, decide, write the new state conditionally (insert, or update_if_match), and on a
lost race (ConcurrencyConflict) read again and decide again. Only the writer whose conditional
update claimed a version pair sends its build message, so two instances marking the two inputs
of a date at the same moment queue one message. The claim and a ``pending`` mark are written
together before sending and the mark is cleared after, so a crash between them is repaired by a
re-delivery or by the scheduled sweep (``check_grace_periods``), at the price of a possible
duplicate message, which the builder skips.

One entity per date: PartitionKey ``date``, RowKey ``YYYY-MM-DD``.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shared import telemetry
from shared.adapters.table_state import retry_on_conflict
from shared.clock import naive_utc
from shared.logs import log_context
from shared.rules.build_plan import InputVersions
from shared.rules.readiness import (
    BuildRecorded,
    DateState,
    Decision,
    Event,
    GraceCheck,
    InputMarked,
    InputName,
    InputState,
    SendConfirmed,
    buildable,
    decide,
    grace_candidate,
)

log = logging.getLogger(__name__)

PARTITION = "date"
MAX_ATTEMPTS = 25  # conditional-update retries per event; contention is a handful of writers


@dataclass(frozen=True)
class MarkResult:
    activity_date: dt.date
    changed: bool  # the input's version differs from what was recorded before
    build_queued: bool  # this call queued the date's build message (not an affected-only one)


class ReadinessGate:
    def __init__(
        self,
        state_table: Any,
        build_queue: Any,
        crm_grace_hours: float,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._state = state_table
        self._queue = build_queue
        self._grace = dt.timedelta(hours=crm_grace_hours)
        self._sleep = sleep

    # ---- the pinned interface ----------------------------------------------------------------
    def mark_input_present(
        self, activity_date: dt.date, input_name: InputName, version: str, rows: int, now: dt.datetime, run_id: str
    ) -> MarkResult:
        """Record that ``input_name`` of ``activity_date`` is present at ``version`` (a content
        hash). Re-marking the same version is a no-op; a new version re-opens the date. Queues
        one build message when the date becomes buildable."""
        if input_name not in ("crm", "usage"):
            raise ValueError(f"unknown input {input_name!r}")
        with log_context(date=activity_date.isoformat()):
            decision = self._apply(activity_date, InputMarked(input_name, version, rows), naive_utc(now), run_id)
            log.info(
                "%s input marked present (%s, %d rows)%s",
                input_name,
                "new version" if decision.changed else "same version",
                rows,
                _queued_note(decision),
            )
        return MarkResult(activity_date, decision.changed, decision.send is not None and not decision.affected_only)

    def check_grace_periods(self, now: dt.datetime, run_id: str) -> list[dt.date]:
        """Queue builds for dates whose usage is present and whose CRM grace period passed
        (and re-send messages whose sender died before confirming). Returns the dates queued."""
        now = naive_utc(now)
        queued: list[dt.date] = []
        for entity in self._state.query(PARTITION):
            state = state_from_entity(entity)
            if not grace_candidate(state, now, self._grace):
                continue
            with log_context(date=state.activity_date.isoformat()):
                decision = self._apply(state.activity_date, GraceCheck(), now, run_id)
                if decision.send:
                    log.info("build queued by the sweep: %s", decision.reason)
                    queued.append(state.activity_date)
        return queued

    # ---- what the builder uses ---------------------------------------------------------------
    def input_versions(self, dates: Sequence[dt.date]) -> dict[dt.date, InputVersions]:
        """Current input versions of the dates that have state (one range query)."""
        if not dates:
            return {}
        wanted = set(dates)
        entities = self._state.query(PARTITION, min(dates).isoformat(), max(dates).isoformat())
        states = (state_from_entity(e) for e in entities)
        return {s.activity_date: s.versions() for s in states if s.activity_date in wanted}

    def lacking_inputs(self, dates: Sequence[dt.date], now: dt.datetime) -> list[dt.date]:
        """The dates whose inputs do not exist as the gate defines them (usage present; CRM
        present or its grace period over): building them would invent rows."""
        if not dates:
            return []
        entities = self._state.query(PARTITION, min(dates).isoformat(), max(dates).isoformat())
        states = {s.activity_date: s for s in (state_from_entity(e) for e in entities)}
        now = naive_utc(now)
        return sorted(d for d in set(dates) if d not in states or buildable(states[d], now, self._grace)[0] is None)

    def record_build(self, built: Mapping[dt.date, InputVersions], run_id: str, now: dt.datetime) -> None:
        """Note each date's build (versions, run) in its state, for status views."""
        for activity_date, versions in sorted(built.items()):
            self._apply(activity_date, BuildRecorded(versions, run_id), naive_utc(now), run_id, create=False)

    def state(self, activity_date: dt.date) -> DateState | None:
        got = self._state.get(PARTITION, activity_date.isoformat())
        return state_from_entity(got[0]) if got else None

    # ---- the read-decide-write loop ------------------------------------------------------------
    def _apply(
        self, activity_date: dt.date, event: Event, now: dt.datetime, run_id: str, *, create: bool = True
    ) -> Decision:
        retrying = retry_on_conflict(MAX_ATTEMPTS, f"readiness state of {activity_date}", sleep=self._sleep)
        decision = retrying(self._decide_and_write, activity_date, event, now, run_id, create)
        if decision.send is not None and decision.affected_only:
            self._send_affected_only(activity_date, decision, run_id)
        elif decision.send is not None:
            self._send(activity_date, decision, run_id)
            self._apply(activity_date, SendConfirmed(decision.send), now, run_id)
        return decision

    def _decide_and_write(
        self, activity_date: dt.date, event: Event, now: dt.datetime, run_id: str, create: bool
    ) -> Decision:
        """One read-decide-write; ConcurrencyConflict when another writer got there first."""
        got = self._state.get(PARTITION, activity_date.isoformat())
        if got is None and not create:
            return Decision(DateState(activity_date))
        state = state_from_entity(got[0]) if got else DateState(activity_date)
        decision = decide(state, event, now, self._grace)
        if got is None:
            self._state.insert(state_to_entity(decision.state, run_id))
        elif decision.state != state:
            self._state.update_if_match(state_to_entity(decision.state, run_id), got[1])
        return decision

    def _send_affected_only(self, activity_date: dt.date, decision: Decision, run_id: str) -> None:
        """Best effort: the mark is recorded and a retried trigger would not send again (same
        version). A lost message is made good by the date's own build (its window neighbours)
        and by every build's search for days whose CRM snapshot in force changed."""
        try:
            self._send(activity_date, decision, run_id)
        except Exception as exc:
            log.warning("could not queue the rebuild of the dates this input changes (%s)", type(exc).__name__)

    def _send(self, activity_date: dt.date, decision: Decision, run_id: str) -> None:
        versions = decision.send
        assert versions is not None
        message: dict[str, Any] = {
            "dates": [activity_date.isoformat()],
            "reason": decision.reason,
            "crm_version": versions.crm_version,
            "usage_version": versions.usage_version,
        }
        if decision.affected_only:
            message["affected_only"] = True
        traceparent = telemetry.current_traceparent()
        if traceparent is not None:  # the build's trace links back to the tick or blob that queued it
            message["traceparent"] = traceparent
        self._queue.send(message)


def _queued_note(decision: Decision) -> str:
    if decision.send is None:
        return ""
    return "; rebuild of the dates it changes queued" if decision.affected_only else "; build queued"


# ---- entity <-> state ---------------------------------------------------------------------------
def state_to_entity(state: DateState, run_id: str) -> dict[str, Any]:
    """Flat properties; absent values are left out (Table Storage has no NULL)."""
    entity: dict[str, Any] = {
        "PartitionKey": PARTITION,
        "RowKey": state.activity_date.isoformat(),
        "pending_send": state.pending,
        "build_status": state.build_status,
        "last_run_id": run_id,
    }
    for name in ("crm", "usage"):
        present: InputState | None = getattr(state, name)
        entity[f"{name}_present"] = present is not None
        if present is not None:
            entity.update(
                {f"{name}_version": present.version, f"{name}_rows": present.rows, f"{name}_at": _iso(present.at)}
            )
    for prefix, pair in (("queued", state.queued), ("built", state.built)):
        if pair is not None:
            entity[f"{prefix}"] = True
            if pair.crm_version is not None:
                entity[f"{prefix}_crm_version"] = pair.crm_version
            if pair.usage_version is not None:
                entity[f"{prefix}_usage_version"] = pair.usage_version
    optional = {"queued_at": state.queued_at, "built_at": state.built_at, "usage_since": state.usage_since}
    entity.update({k: _iso(v) for k, v in optional.items() if v is not None})
    if state.built_run_id is not None:
        entity["built_run_id"] = state.built_run_id
    return entity


def state_from_entity(entity: Mapping[str, Any]) -> DateState:
    def present(name: str) -> InputState | None:
        if not entity.get(f"{name}_present"):
            return None
        return InputState(str(entity[f"{name}_version"]), int(entity[f"{name}_rows"]), _parse(entity[f"{name}_at"]))

    def pair(prefix: str) -> InputVersions | None:
        if not entity.get(prefix):
            return None
        return InputVersions(entity.get(f"{prefix}_crm_version"), entity.get(f"{prefix}_usage_version"))

    return DateState(
        activity_date=dt.date.fromisoformat(str(entity["RowKey"])),
        crm=present("crm"),
        usage=present("usage"),
        queued=pair("queued"),
        queued_at=_parse(entity["queued_at"]) if entity.get("queued_at") else None,
        pending=bool(entity.get("pending_send", False)),
        build_status=entity.get("build_status", "waiting"),
        built=pair("built"),
        built_at=_parse(entity["built_at"]) if entity.get("built_at") else None,
        built_run_id=entity.get("built_run_id"),
        # Absent in entities written before the field existed: grace then counts from usage_at.
        usage_since=_parse(entity["usage_since"]) if entity.get("usage_since") else None,
    )


def _iso(value: dt.datetime) -> str:
    return naive_utc(value).isoformat(timespec="microseconds")


def _parse(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return naive_utc(value)
    return naive_utc(dt.datetime.fromisoformat(str(value)))
