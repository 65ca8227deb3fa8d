"""Backfill of a range of days (``backfill``): pull what is missing, build what is stale, check.

Through the timer's pull and staging path (``usage_ingest``) and the builder's range build, in
chunks; resumable by construction (``shared.rules.backfill_plan``): the plan is recomputed from
the warehouse before each phase, so a run stopped part way skips next time what it finished.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from shared.adapters.warehouse.base import Warehouse
from shared.clock import Clock, utc_now
from shared.logs import log_context, new_run_id
from shared.rules.backfill_plan import BackfillDateState, BackfillPlan, plan_backfill
from shared.rules.date_ranges import DEFAULT_CHUNK_DAYS, DateRange, contiguous_ranges
from shared.rules.dates import refuse_future_dates
from shared.rules.json_report import json_safe
from shared.services import usage_ingest
from shared.services.builder import BuilderResources
from shared.services.check_rerun import run_quality_checks
from shared.services.progress import NoProgress, OperationStopped, Progress
from shared.services.rebuild import build_now
from shared.services.resources import HasUsageApi
from shared.services.status import GateView, inputs_and_builds
from shared.services.usage_ingest import UsageResources


class BackfillResources(UsageResources, BuilderResources, HasUsageApi, Protocol):
    """What a backfill needs: the usage pull's and the builder's resources (the checks' are among them)."""


@dataclass(frozen=True)
class BackfillResult:
    plan: BackfillPlan
    pulled: list[dt.date]
    built: list[DateRange]
    build_skipped_after_pull: list[dt.date]
    run_id: str
    checked: list[dt.date] = field(default_factory=list)  # dates whose missing checks were run

    def to_dict(self) -> dict[str, Any]:
        return json_safe(
            {
                "run_id": self.run_id,
                "dates": str(self.plan.dates),
                "pulled": self.pulled,
                "pull_skipped": self.plan.pull_skipped,
                "built": [str(c) for c in self.built],
                "built_dates": sum(len(c) for c in self.built),
                "build_skipped": self.build_skipped_after_pull,
                "checked": self.checked,
            }
        )


StateReader = Callable[[Sequence[dt.date]], Mapping[dt.date, BackfillDateState]]
PullDay = Callable[[dt.date], Any]
BuildRange = Callable[[DateRange], Any]
CheckDays = Callable[[Sequence[dt.date]], Any]


def run_backfill(
    dates: DateRange,
    *,
    read_states: StateReader,
    pull_day: PullDay,
    build_range: BuildRange,
    progress: Progress | None = None,
    chunk_days: int = DEFAULT_CHUNK_DAYS,
    run_id: str | None = None,
    check_days: CheckDays | None = None,
) -> BackfillResult:
    """Pull the days not yet pulled, build the days not up to date, in chunks, then run the
    checks of built days whose checks never ran (``check_days``).

    Resumable by construction: the plan is recomputed from the warehouse before each phase, so
    a run stopped part way (an error, Ctrl-C) skips on the next run what it had finished.
    """
    progress = progress or NoProgress()
    run_id = run_id or new_run_id()
    plan = plan_backfill(dates, read_states(dates.days()), chunk_days)

    progress.start_phase("pull usage", len(dates))
    progress.advance(len(plan.pull_skipped), skipped=True)
    pulled: list[dt.date] = []
    for day in plan.pull:
        with _stop_with_resume_hint(f"pull of {day}", dates):
            pull_day(day)
        pulled.append(day)
        progress.advance(1)

    # The pull changed usage versions: decide what to build from the warehouse as it is now.
    after_pull = plan_backfill(dates, read_states(dates.days()), chunk_days)
    builds = after_pull.build
    progress.start_phase("build", len(dates))
    progress.advance(len(after_pull.build_skipped), skipped=True)
    built: list[DateRange] = []
    for chunk in builds:
        with _stop_with_resume_hint(f"build of {chunk}", dates):
            build_range(chunk)
        built.append(chunk)
        progress.advance(len(chunk))

    checked: list[dt.date] = []
    if check_days is not None:
        # Builds run their checks; dates whose checks never ran (Ctrl-C between a build and its
        # checks, a check run that failed) are checked now, from the warehouse as it is.
        unchecked = plan_backfill(dates, read_states(dates.days()), chunk_days).check
        progress.start_phase("checks", len(unchecked))
        for chunk in contiguous_ranges(unchecked, chunk_days):
            with _stop_with_resume_hint(f"checks of {chunk}", dates):
                check_days(chunk.days())
            checked.extend(chunk.days())
            progress.advance(len(chunk))
    return BackfillResult(plan, pulled, built, after_pull.build_skipped, run_id, checked)


@contextlib.contextmanager
def _stop_with_resume_hint(where: str, dates: DateRange) -> Iterator[None]:
    """Turn a failure inside one step into OperationStopped naming the step and the way on."""
    try:
        yield
    except Exception as exc:
        raise OperationStopped(
            f"backfill stopped at the {where}: {type(exc).__name__}: {exc} (re-run `backfill --start {dates.start} "
            f"--end {dates.end}` to resume: done dates are skipped)"
        ) from exc


def read_backfill_states(
    warehouse: Warehouse, days: Sequence[dt.date], watermarks: Collection[dt.date], gate: GateView | None = None
) -> dict[dt.date, BackfillDateState]:
    """Pulled: the day has a usage watermark (the timer's own notion of done) and staged usage.
    Up to date: its last successful build used the input versions present now."""
    if not days:
        return {}
    known = inputs_and_builds(warehouse, DateRange(min(days), max(days)), gate)
    return {
        day: BackfillDateState(
            pulled=day in watermarks and known[day].usage.present,
            up_to_date=bool(known[day].build.inputs_current),
            checked=not known[day].build.built or known[day].build.checked_at is not None,
        )
        for day in days
    }


def backfill_dates(
    resources: BackfillResources,
    dates: DateRange,
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
    chunk_days: int = DEFAULT_CHUNK_DAYS,
    clock: Clock = utc_now,
) -> BackfillPlan | BackfillResult:
    """Backfill through the timer's pull + staging path and the builder's range build, then the
    checks any built date still lacks.

    ``dry_run`` returns the plan and touches nothing (no API call, no write)."""
    refuse_future_dates(dates.days(), clock())
    warehouse, state = resources.warehouse, resources.state_table

    def read_states(days: Sequence[dt.date]) -> dict[dt.date, BackfillDateState]:
        return read_backfill_states(warehouse, days, usage_ingest.load_watermarks(state).keys(), resources.readiness)

    if dry_run:
        return plan_backfill(dates, read_states(dates.days()), chunk_days)
    run_id = new_run_id()
    # One client for the whole backfill: one session, the process's rate limiter, one retry budget.
    source = resources.usage_api.for_run()

    def pull_day(day: dt.date) -> Any:
        with log_context(run_id=run_id, step="backfill", date=day.isoformat()):
            return usage_ingest.ingest_date(day, source, resources, run_id, clock())

    def build_range(chunk: DateRange) -> Any:
        with log_context(run_id=run_id, step="backfill", date=str(chunk)):
            return build_now(resources, chunk, force=False)

    def check_days(days: Sequence[dt.date]) -> Any:
        return run_quality_checks(resources, days, run_id, clock)

    return run_backfill(
        dates,
        read_states=read_states,
        pull_day=pull_day,
        build_range=build_range,
        progress=progress,
        chunk_days=chunk_days,
        run_id=run_id,
        check_days=check_days,
    )
