"""What a backfill of a range of days does: pure, no I/O.

Resumability is this plan recomputed from the warehouse: a day already pulled is not pulled
again, a day built from the inputs present now is not built again (unless its usage is pulled
now), and a built day whose checks never ran is only checked.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from shared.rules.date_ranges import DateRange, contiguous_ranges
from shared.rules.json_report import json_safe


@dataclass(frozen=True)
class BackfillDateState:
    """What resumability compares for one date."""

    pulled: bool  # usage for the date is staged
    up_to_date: bool  # the last successful build used the inputs present now
    checked: bool = True  # its data-quality checks ran after that build


@dataclass(frozen=True)
class BackfillPlan:
    """What a backfill of ``dates`` does: which days it pulls, which it builds, what it skips."""

    dates: DateRange
    pull: list[dt.date]
    pull_skipped: list[dt.date]
    build: list[DateRange]
    build_skipped: list[dt.date]
    # Built from the present inputs but their checks never ran (an interrupted run): checked only.
    check: list[dt.date] = field(default_factory=list)

    @property
    def build_days(self) -> int:
        return sum(len(chunk) for chunk in self.build)

    def to_dict(self) -> dict[str, Any]:
        return json_safe({**asdict(self), "dates": str(self.dates), "build": [str(c) for c in self.build]})


def plan_backfill(dates: DateRange, states: Mapping[dt.date, BackfillDateState], chunk_days: int) -> BackfillPlan:
    """Dates already pulled are not pulled again; dates built from the present inputs are not
    built again unless their usage is (re)pulled now."""
    pull = [d for d in dates.days() if not states[d].pulled]
    to_build = [d for d in dates.days() if not states[d].up_to_date or d in set(pull)]
    return BackfillPlan(
        dates=dates,
        pull=pull,
        pull_skipped=[d for d in dates.days() if states[d].pulled],
        build=contiguous_ranges(to_build, chunk_days),
        build_skipped=[d for d in dates.days() if d not in set(to_build)],
        check=[d for d in dates.days() if d not in set(to_build) and not states[d].checked],
    )
