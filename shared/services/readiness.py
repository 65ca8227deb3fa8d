"""Readiness gate: per-date input state in Table Storage; queues exactly one build per change.

INTERFACE PINNED BY THE FOUNDATION; implemented by the builder issue. The thin edge loads
state and calls a pure ``decide(state, event)`` (shared/rules/readiness.py).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal

InputName = Literal["crm", "usage"]


@dataclass(frozen=True)
class MarkResult:
    activity_date: dt.date
    changed: bool  # the input's version differs from what was recorded before
    build_queued: bool  # this call queued the build message


class ReadinessGate:
    def __init__(self, state_table: Any, build_queue: Any, crm_grace_hours: float) -> None:
        self._state = state_table
        self._queue = build_queue
        self._grace = dt.timedelta(hours=crm_grace_hours)

    def mark_input_present(
        self, activity_date: dt.date, input_name: InputName, version: str, rows: int, now: dt.datetime, run_id: str
    ) -> MarkResult:
        """Record that ``input_name`` of ``activity_date`` is present at ``version`` (a content
        hash). Re-marking the same version is a no-op; a new version re-opens the date. Queues
        one build message when the date becomes buildable."""
        raise NotImplementedError

    def check_grace_periods(self, now: dt.datetime, run_id: str) -> list[dt.date]:
        """Queue builds for dates whose usage is present and whose CRM grace period passed."""
        raise NotImplementedError
