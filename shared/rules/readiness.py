"""The readiness gate's decision, as a pure function: ``decide(state, event, now, grace)``.

One ``DateState`` per UTC day holds each input's presence and version, the version pair last
queued for a build, and whether that message is confirmed sent. Events: an input marked present,
a grace-period check, a send confirmed, a build recorded. The edge (shared/services/readiness.py)
reads the state, calls ``decide``, writes the new state with an ETag condition and sends what
the decision says, so every race is settled by the table, not by this code.

A date is buildable when both inputs are present, or when usage is present and the CRM file
has not come within ``grace`` of the usage (then it is built with the older snapshot, "stale").
The grace clock starts when usage was first present: a look-back correction of the usage does
not restart the wait, and once a date was built stale, its corrections are rebuilt at once.
A build is queued once per buildable version pair: a new version of either input, or the CRM
file arriving after a stale build, gives a new pair and queues again. A new version of an
input of a date that cannot be built yet (a CRM snapshot before its usage, usage within its
CRM grace period) already changes built days around it (a snapshot is in force until the next
one; usage is in later days' windows), so it queues an ``affected_only`` message: the builder
rebuilds those days, not the date. Such a message claims nothing in the state: if its send is
lost, the date's own build (once buildable) still rebuilds its window neighbours, and every
build finds the days whose CRM snapshot in force changed.

Crash safety: queueing writes ``pending=True`` in the same conditional update that claims the
pair; the edge sends, then clears it. A sender that dies in between leaves ``pending`` set, and
the next event for that date (a re-delivered trigger) re-sends, as does a grace check once the
pending mark is older than ``PENDING_LEASE``. A duplicate message is harmless (the builder skips
versions it already built); a lost one would leave a date unbuilt.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import Literal

from shared.rules.build_plan import InputVersions

# The two inputs of a date; every module that names one uses this type.
InputName = Literal["crm", "usage"]
BuildStatus = Literal["waiting", "queued", "built"]
PENDING_LEASE = dt.timedelta(minutes=5)  # longer than one send; after it, a sweep re-sends


@dataclass(frozen=True)
class InputState:
    version: str
    rows: int
    at: dt.datetime  # when this version was first marked present (UTC)


@dataclass(frozen=True)
class DateState:
    activity_date: dt.date
    crm: InputState | None = None
    usage: InputState | None = None
    queued: InputVersions | None = None  # the pair a build message was last queued for
    queued_at: dt.datetime | None = None
    pending: bool = False  # the queued pair's message is not confirmed sent yet
    build_status: BuildStatus = "waiting"
    built: InputVersions | None = None  # the pair of the last build recorded by the builder
    built_at: dt.datetime | None = None
    built_run_id: str | None = None
    usage_since: dt.datetime | None = None  # when usage was first present: the CRM grace clock

    def versions(self) -> InputVersions:
        return InputVersions(self.crm.version if self.crm else None, self.usage.version if self.usage else None)


# ---- events ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class InputMarked:
    input_name: InputName
    version: str
    rows: int


@dataclass(frozen=True)
class GraceCheck:
    """The scheduled sweep: queue stale builds whose CRM grace passed; re-send lost sends."""


@dataclass(frozen=True)
class SendConfirmed:
    versions: InputVersions


@dataclass(frozen=True)
class BuildRecorded:
    versions: InputVersions
    run_id: str


Event = InputMarked | GraceCheck | SendConfirmed | BuildRecorded


@dataclass(frozen=True)
class Decision:
    state: DateState
    send: InputVersions | None = None  # queue a build message for this pair
    changed: bool = False  # the marked input's version differs from the recorded one
    reason: str = ""
    affected_only: bool = False  # the message rebuilds what the change reaches, not the date


def decide(state: DateState, event: Event, now: dt.datetime, grace: dt.timedelta) -> Decision:
    """The new state of a date after ``event``, and whether to send a build message."""
    if isinstance(event, SendConfirmed):
        if state.pending and state.queued == event.versions:
            return Decision(dataclasses.replace(state, pending=False))
        return Decision(state)
    if isinstance(event, BuildRecorded):
        return Decision(_with_build(state, event, now))

    changed = False
    if isinstance(event, InputMarked):
        state, changed = _with_input(state, event, now)

    pair, reason = buildable(state, now, grace)
    if pair is not None and pair != state.queued:
        queued = dataclasses.replace(state, queued=pair, queued_at=now, pending=True, build_status="queued")
        return Decision(queued, send=pair, changed=changed, reason=reason)
    if changed and pair is None:
        why = "new input version while the date cannot be built yet: rebuild the built dates it changes"
        return Decision(state, send=state.versions(), changed=True, reason=why, affected_only=True)
    if state.pending and state.queued is not None and _should_resend(state, event, now):
        return Decision(state, send=state.queued, changed=changed, reason="re-send: earlier send not confirmed")
    return Decision(state, changed=changed)


def buildable(state: DateState, now: dt.datetime, grace: dt.timedelta) -> tuple[InputVersions | None, str]:
    """The version pair a build should use now, or None while the date must wait."""
    if state.usage is None:
        return None, ""
    if state.crm is not None:
        return InputVersions(state.crm.version, state.usage.version), "both inputs present"
    if now - (state.usage_since or state.usage.at) >= grace:
        return InputVersions(None, state.usage.version), "CRM grace period passed: build with the older snapshot"
    return None, ""


def grace_candidate(state: DateState, now: dt.datetime, grace: dt.timedelta) -> bool:
    """Whether a sweep must look at this date (saves conditional writes on settled dates)."""
    pair, _ = buildable(state, now, grace)
    if pair is not None and pair != state.queued:
        return True
    return state.pending and state.queued_at is not None and now - state.queued_at >= PENDING_LEASE


def _with_input(state: DateState, event: InputMarked, now: dt.datetime) -> tuple[DateState, bool]:
    current = state.crm if event.input_name == "crm" else state.usage
    if current is not None and current.version == event.version:
        return state, False  # a duplicate: keep the first arrival time (the grace clock)
    marked = InputState(event.version, event.rows, now)
    if event.input_name == "crm":
        state = dataclasses.replace(state, crm=marked)
    else:
        state = dataclasses.replace(state, usage=marked)
    if event.input_name == "usage" and state.usage_since is None:
        state = dataclasses.replace(state, usage_since=now)
    # A new version re-opens the date until its build is queued.
    return dataclasses.replace(state, build_status="waiting"), True


def _with_build(state: DateState, event: BuildRecorded, now: dt.datetime) -> DateState:
    newer_queued = state.queued is not None and state.queued != event.versions
    return dataclasses.replace(
        state,
        built=event.versions,
        built_at=now,
        built_run_id=event.run_id,
        build_status="queued" if newer_queued else "built",
    )


def _should_resend(state: DateState, event: Event, now: dt.datetime) -> bool:
    if isinstance(event, InputMarked):
        return True  # a re-delivered trigger: its first run may have died before sending
    return state.queued_at is not None and now - state.queued_at >= PENDING_LEASE
