"""Which days a usage tick pulls (shared/rules/dates.py)."""

from __future__ import annotations

import datetime as dt

import pytest

from shared.errors import FutureDateRefused
from shared.rules.dates import last_buildable_date, plan_pulls, refuse_future_dates, utc_day_of

TODAY = dt.date(2025, 3, 10)
YESTERDAY = dt.date(2025, 3, 9)


def days(*numbers: int) -> tuple[dt.date, ...]:
    return tuple(dt.date(2025, 3, n) for n in numbers)


def test_first_run_pulls_yesterday_and_lookback_only() -> None:
    plan = plan_pulls(TODAY, [], lookback_days=3, max_catchup_days=31)
    assert plan.dates == days(6, 7, 8, 9)
    assert plan.reasons[YESTERDAY] == "yesterday"
    assert {plan.reasons[d] for d in days(6, 7, 8)} == {"lookback"}
    assert plan.missed_beyond_bound == ()


def test_up_to_date_watermarks_still_repull_the_lookback_window() -> None:
    plan = plan_pulls(TODAY, days(1, 2, 3, 4, 5, 6, 7, 8), lookback_days=3, max_catchup_days=31)
    assert plan.dates == days(6, 7, 8, 9)


def test_missed_ticks_are_caught_up_since_the_last_successful_pull() -> None:
    plan = plan_pulls(TODAY, days(1, 2), lookback_days=1, max_catchup_days=31)
    assert plan.dates == days(3, 4, 5, 6, 7, 8, 9)
    assert plan.reasons[dt.date(2025, 3, 3)] == "catchup"
    assert plan.reasons[dt.date(2025, 3, 8)] == "lookback"


def test_a_failed_day_between_successes_is_retried() -> None:
    plan = plan_pulls(TODAY, days(1, 2, 4, 5, 6, 7, 8), lookback_days=0, max_catchup_days=31)
    assert plan.dates == days(3, 9)


def test_catch_up_is_bounded_and_reports_the_older_gap() -> None:
    plan = plan_pulls(TODAY, [dt.date(2025, 1, 1)], lookback_days=0, max_catchup_days=5)
    assert plan.dates == days(5, 6, 7, 8, 9)
    assert plan.missed_beyond_bound[0] == dt.date(2025, 1, 2)
    assert plan.missed_beyond_bound[-1] == dt.date(2025, 3, 4)


def test_watermarks_after_yesterday_do_not_count_as_history() -> None:
    plan = plan_pulls(TODAY, [TODAY], lookback_days=0, max_catchup_days=31)
    assert plan.dates == (YESTERDAY,)


def test_zero_lookback_pulls_only_yesterday() -> None:
    assert plan_pulls(TODAY, [], lookback_days=0, max_catchup_days=1).dates == (YESTERDAY,)


def test_invalid_bounds_are_refused() -> None:
    with pytest.raises(ValueError):
        plan_pulls(TODAY, [], lookback_days=-1, max_catchup_days=1)
    with pytest.raises(ValueError):
        plan_pulls(TODAY, [], lookback_days=0, max_catchup_days=0)


def test_utc_day_of_converts_offsets_and_takes_naive_as_utc() -> None:
    late_in_new_york = dt.datetime(2025, 3, 9, 22, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    assert utc_day_of(late_in_new_york) == TODAY
    assert utc_day_of(dt.datetime(2025, 3, 10, 0, 5)) == TODAY


def test_a_day_that_only_ever_failed_is_retried_even_before_the_first_success() -> None:
    plan = plan_pulls(TODAY, days(7, 8), failed=days(6), lookback_days=0, max_catchup_days=31)
    assert plan.dates == days(6, 9)
    assert plan.reasons[dt.date(2025, 3, 6)] == "catchup"


def test_last_buildable_date_is_yesterday_utc_whatever_the_offset() -> None:
    late_evening_in_new_york = dt.datetime(2025, 3, 1, 22, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    assert last_buildable_date(late_evening_in_new_york) == dt.date(2025, 3, 1)  # 03:00 UTC on 2 March


def test_refuse_future_dates_names_the_first_future_date_and_the_limit() -> None:
    now = dt.datetime(2025, 3, 10, 1, 0, tzinfo=dt.UTC)
    refuse_future_dates([dt.date(2025, 3, 9), dt.date(2025, 1, 1)], now)  # yesterday and older pass
    with pytest.raises(FutureDateRefused, match=r"2025-03-10 is in the future.*2025-03-09"):
        refuse_future_dates([dt.date(2025, 3, 12), dt.date(2025, 3, 10), dt.date(2025, 3, 1)], now)
