"""The backfill plan (shared.rules.backfill_plan): what is pulled, built, checked or skipped."""

from __future__ import annotations

import datetime as dt

from shared.rules.backfill_plan import BackfillDateState, plan_backfill
from shared.rules.date_ranges import DateRange

START = dt.date(2025, 1, 1)


def days(n: int, start: dt.date = START) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range(n)]


def test_plan_rebuilds_dates_whose_usage_is_pulled_even_if_built_before() -> None:
    rng = DateRange(START, START + dt.timedelta(days=3))
    states = {
        d: BackfillDateState(pulled=i < 2, up_to_date=i in (0, 2)) for i, d in enumerate(rng.days())
    }  # day 2 built but not pulled: its pull will change it

    plan = plan_backfill(rng, states, chunk_days=31)

    assert plan.pull == days(2, START + dt.timedelta(days=2))
    assert plan.build == [DateRange(START + dt.timedelta(days=1), START + dt.timedelta(days=3))]
    assert plan.build_skipped == [START]


def test_plan_lists_built_dates_without_checks_to_check_only() -> None:
    rng = DateRange(START, START + dt.timedelta(days=2))
    states = {
        START: BackfillDateState(pulled=True, up_to_date=True, checked=False),
        START + dt.timedelta(days=1): BackfillDateState(pulled=True, up_to_date=True, checked=True),
        START + dt.timedelta(days=2): BackfillDateState(pulled=True, up_to_date=False, checked=False),
    }

    plan = plan_backfill(rng, states, chunk_days=31)

    assert plan.check == [START]
    assert plan.build == [DateRange.single(START + dt.timedelta(days=2))]
