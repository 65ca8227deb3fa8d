"""Rebuild of dates (``rebuild``, and the builds of ``backfill``): through the builder's own code.

A rebuild queues forced build messages in the readiness gate's format, or runs them now
(``inline``) through the same ``builder.handle_build_message`` the queue trigger runs.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any, Protocol

from shared.clock import Clock, utc_now
from shared.rules.date_ranges import DEFAULT_CHUNK_DAYS, DateRange, contiguous_ranges
from shared.rules.dates import refuse_future_dates
from shared.rules.json_report import json_safe
from shared.services import builder
from shared.services.builder import BuilderResources, BuildOutcome
from shared.services.progress import Interrupted, NoProgress, OperationStopped, Progress
from shared.services.resources import HasBuildQueue


class RebuildResources(BuilderResources, HasBuildQueue, Protocol):
    """What a rebuild needs: the builder's resources, and the queue it may send to instead."""


@dataclass(frozen=True)
class RebuildResult:
    dates: DateRange
    inline: bool
    messages: list[dict[str, Any]]  # one per chunk: what is (or would be) queued or built
    message_ids: list[str] = field(default_factory=list)  # when queued
    outcomes: list[BuildOutcome] = field(default_factory=list)  # the builder's results when run inline
    dry_run: bool = False

    @property
    def run_ids(self) -> list[str]:
        return [outcome.run_id for outcome in self.outcomes]

    @property
    def rows_written(self) -> int:
        return sum(outcome.rows_written for outcome in self.outcomes)

    def to_dict(self) -> dict[str, Any]:
        return json_safe(
            {
                "dates": str(self.dates),
                "inline": self.inline,
                "dry_run": self.dry_run,
                "chunks": [str(_range_of(m)) for m in self.messages],
                "messages": self.messages,
                "message_ids": self.message_ids,
                "run_ids": self.run_ids,
                "dates_built": sum(len(o.plan.targets) for o in self.outcomes),
                "rows_written": self.rows_written,
            }
        )


def rebuild_dates(
    resources: RebuildResources,
    dates: DateRange,
    *,
    inline: bool = False,
    dry_run: bool = False,
    chunk_days: int = DEFAULT_CHUNK_DAYS,
    progress: Progress | None = None,
    clock: Clock = utc_now,
) -> RebuildResult:
    """Rebuild ``dates`` in chunks of at most ``chunk_days`` consecutive days (as backfill does,
    so each message fits the builder's functionTimeout): one forced build message per chunk
    queued, or run now through the builder (``inline``), which also runs each chunk's checks.
    The builder adds the window neighbours (D+1..D+6 already built).

    Ctrl-C while building inline raises ``Interrupted`` with the range still to rebuild: the
    chunks before it are committed and checked, the current one rolled back."""
    refuse_future_dates(dates.days(), clock())
    chunks = contiguous_ranges(dates.days(), chunk_days)
    messages = [build_message(chunk, reason="cli rebuild", force=True) for chunk in chunks]
    if dry_run:
        return RebuildResult(dates, inline, messages, dry_run=True)
    if not inline:
        resources.build_queue.ensure_exists()
        return RebuildResult(dates, False, messages, message_ids=[resources.build_queue.send(m) for m in messages])
    progress = progress or NoProgress()
    progress.start_phase("rebuild", len(dates))
    outcomes = []
    for chunk in chunks:
        try:
            outcomes.append(build_now(resources, chunk, force=True))
        except KeyboardInterrupt as exc:
            raise Interrupted(DateRange(chunk.start, dates.end)) from exc
        progress.advance(len(chunk))
    return RebuildResult(dates, True, messages, outcomes=outcomes)


def build_message(dates: DateRange, *, reason: str, force: bool) -> dict[str, Any]:
    """A build request in the format the readiness gate queues and the builder reads."""
    return {"start": dates.start.isoformat(), "end": dates.end.isoformat(), "reason": reason, "force": force}


def _range_of(message: dict[str, Any]) -> DateRange:
    return DateRange(dt.date.fromisoformat(message["start"]), dt.date.fromisoformat(message["end"]))


def build_now(resources: BuilderResources, dates: DateRange, *, force: bool) -> BuildOutcome:
    """Run a build of ``dates`` now, through the same builder code the queue trigger runs."""
    body = json.dumps(build_message(dates, reason="cli", force=force)).encode()
    outcome = builder.handle_build_message(body, 1, resources)
    if outcome is None:  # the builder rejected the message as malformed (it alerted and logged why)
        raise OperationStopped(f"the builder rejected the build request for {dates}")
    return outcome
