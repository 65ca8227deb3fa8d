"""Data-quality checks run again on demand (``checks``, and the checks a backfill still owes).

The same checks a build runs (``shared.services.quality``: stored, flagged, alerted), of the
dates that were built; a check of a date never built says nothing, so those are skipped.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from shared.clock import Clock, utc_now
from shared.logs import log_context, new_run_id
from shared.rules.date_ranges import DateRange
from shared.rules.dates import refuse_future_dates
from shared.rules.json_report import json_safe
from shared.services import builder, quality
from shared.services.resources import StepResources


def run_quality_checks(
    resources: StepResources, days: Sequence[dt.date], run_id: str, clock: Clock = utc_now
) -> list[quality.CheckResult]:
    """The full data-quality checks of ``days``, as after a build (stored, flagged, alerted)."""
    with log_context(run_id=run_id, step=quality.QUALITY_STEP):
        return quality.run_checks(resources.warehouse, days, run_id, clock(), resources.settings, resources.alerts)


@dataclass(frozen=True)
class ChecksRun:
    dates: DateRange
    checked: list[dt.date]  # built dates whose checks ran (or would run)
    not_built: list[dt.date]  # skipped: a check of a date never built says nothing
    checks: list[str]
    results: list[quality.CheckResult] = field(default_factory=list)
    run_id: str | None = None
    dry_run: bool = False

    def counts(self) -> dict[str, int]:
        found = {status: 0 for status in ("pass", "warn", "fail", "error")}
        for result in self.results:
            found[result.status] += 1
        return found

    @property
    def ok(self) -> bool:
        counts = self.counts()
        return not counts["fail"] and not counts["error"]

    def to_dict(self) -> dict[str, Any]:
        return json_safe(
            {
                "dates": str(self.dates),
                "run_id": self.run_id,
                "dry_run": self.dry_run,
                "checked": self.checked,
                "not_built": self.not_built,
                "checks": self.checks,
                "counts": self.counts(),
                "results": [asdict(r) for r in self.results],
            }
        )


def rerun_checks(
    resources: StepResources,
    dates: DateRange,
    *,
    names: Sequence[str] = (),
    dry_run: bool = False,
    clock: Clock = utc_now,
) -> ChecksRun:
    """Re-run the data-quality checks (all, or ``names``) of the built dates of ``dates``."""
    refuse_future_dates(dates.days(), clock())
    checks = quality.checks_named(*names) if names else quality.CHECKS
    built = set(builder.recorded_versions(resources.warehouse, dates.start, dates.end))
    checked = [d for d in dates.days() if d in built]
    not_built = [d for d in dates.days() if d not in built]
    check_names = [c.name for c in checks]
    if dry_run or not checked:
        return ChecksRun(dates, checked, not_built, check_names, dry_run=dry_run)
    run_id = new_run_id()
    with log_context(run_id=run_id, step=quality.QUALITY_STEP):
        results = quality.run_checks(
            resources.warehouse, checked, run_id, clock(), resources.settings, resources.alerts, checks
        )
    return ChecksRun(dates, checked, not_built, check_names, results, run_id)
