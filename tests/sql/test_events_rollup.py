"""Events rollup on DuckDB: UTC days, de-duplication by event_id, only touched days plus the
look-back recomputed, and the reconciliation check against the API's daily events."""

from __future__ import annotations

import datetime as dt

import pytest

from shared.adapters.warehouse.duckdb_engine import DuckDBWarehouse
from shared.errors import RejectedInput
from shared.services.events_rollup import (
    DEDUP_WINDOW_DAYS,
    days_to_refresh,
    load_fact_events,
    refresh_company_daily_events,
    utc_event_time,
)
from shared.services.quality import CheckResult, checks_named, evaluate
from shared.settings import Settings

D = dt.date(2025, 3, 10)
NOW = dt.datetime(2025, 3, 20, 2, 0)  # today 2025-03-20: with a 2-day look-back, 18..20 always refresh


def rollup(wh: DuckDBWarehouse) -> dict[tuple[dt.date, str], int]:
    rows = wh.run_sql("SELECT activity_date, company_id, event_count FROM agg.company_daily_events")
    return {(r["activity_date"], r["company_id"]): r["event_count"] for r in rows}


def refresh(wh: DuckDBWarehouse, run_id: str, now: dt.datetime = NOW) -> list[dt.date]:
    return refresh_company_daily_events(wh, run_id, now, lookback_days=2).days


def at(day: dt.date, hour: int) -> str:
    return f"{day.isoformat()}T{hour:02d}:00:00Z"


# ---- pure parts -------------------------------------------------------------------------------
def test_event_times_with_an_offset_are_converted_to_utc() -> None:
    assert utc_event_time("2025-03-10T23:30:00-02:00") == dt.datetime(2025, 3, 11, 1, 30)
    assert utc_event_time("2025-03-10T23:30:00Z") == dt.datetime(2025, 3, 10, 23, 30)
    assert utc_event_time("2025-03-10 23:30:00") == dt.datetime(2025, 3, 10, 23, 30)  # naive is UTC
    with pytest.raises(RejectedInput):
        utc_event_time("yesterday")


def test_days_to_refresh_are_the_touched_days_and_the_look_back() -> None:
    today = dt.date(2025, 3, 20)
    assert days_to_refresh([D, dt.date(2025, 3, 19)], today, 2) == [D, *(dt.date(2025, 3, d) for d in (18, 19, 20))]


# ---- refresh ----------------------------------------------------------------------------------
def test_events_count_on_their_utc_day(wh: DuckDBWarehouse) -> None:
    load_fact_events(wh, [("e1", "acme", "2025-03-10T23:30:00-02:00"), ("e2", "acme", at(D, 12))], NOW)
    refresh(wh, "r1")
    assert rollup(wh) == {(D, "acme"): 1, (D + dt.timedelta(days=1), "acme"): 1}


def test_events_are_counted_once_per_event_id(wh: DuckDBWarehouse) -> None:
    load_fact_events(wh, [("e1", "acme", at(D, 1)), ("e1", "acme", at(D, 1)), ("e2", "acme", at(D, 2))], NOW)
    refresh(wh, "r1")
    load_fact_events(wh, [("e1", "acme", at(D, 1))], NOW + dt.timedelta(hours=1))  # a re-delivery, later
    refresh(wh, "r2", NOW + dt.timedelta(hours=1))
    assert rollup(wh) == {(D, "acme"): 2}


def test_a_later_copy_on_another_day_does_not_count_twice(wh: DuckDBWarehouse) -> None:
    load_fact_events(wh, [("e1", "acme", at(D, 23))], NOW)
    refresh(wh, "r1")
    next_day = D + dt.timedelta(days=1)
    load_fact_events(wh, [("e1", "acme", at(next_day, 0))], NOW + dt.timedelta(hours=1))
    refresh(wh, "r2", NOW + dt.timedelta(hours=1))
    assert rollup(wh) == {(D, "acme"): 1}  # the first delivered copy counts


def test_a_copy_a_week_later_is_still_the_same_event(wh: DuckDBWarehouse) -> None:
    load_fact_events(wh, [("e1", "acme", at(D, 12))], NOW)
    refresh(wh, "r1")
    week_later = D + dt.timedelta(days=DEDUP_WINDOW_DAYS)
    load_fact_events(wh, [("e1", "acme", at(week_later, 12))], NOW + dt.timedelta(hours=1))
    refresh(wh, "r2", NOW + dt.timedelta(hours=1))
    assert rollup(wh) == {(D, "acme"): 1}


def test_copies_further_apart_than_the_window_count_as_two_events(wh: DuckDBWarehouse) -> None:
    load_fact_events(wh, [("e1", "acme", at(D, 12))], NOW)
    refresh(wh, "r1")
    beyond = D + dt.timedelta(days=DEDUP_WINDOW_DAYS + 1)
    load_fact_events(wh, [("e1", "acme", at(beyond, 12))], NOW + dt.timedelta(hours=1))
    refresh(wh, "r2", NOW + dt.timedelta(hours=1))
    assert rollup(wh) == {(D, "acme"): 1, (beyond, "acme"): 1}


def test_only_touched_days_and_the_look_back_are_recomputed(wh: DuckDBWarehouse) -> None:
    old_day, other_old_day = D, D - dt.timedelta(days=3)
    load_fact_events(wh, [("e1", "acme", at(old_day, 1)), ("e2", "acme", at(other_old_day, 1))], NOW)
    refresh(wh, "r1")
    # Tamper with an untouched day: a refresh that rescanned history would repair it.
    wh.run_sql("UPDATE agg.company_daily_events SET event_count = 999 WHERE activity_date = @d", {"d": other_old_day})
    late = NOW + dt.timedelta(hours=1)
    load_fact_events(wh, [("e3", "acme", at(old_day, 5)), ("e4", "globex", at(dt.date(2025, 3, 19), 5))], late)
    days = refresh(wh, "r2", late)
    assert days == [old_day, dt.date(2025, 3, 18), dt.date(2025, 3, 19), dt.date(2025, 3, 20)]
    assert rollup(wh) == {(old_day, "acme"): 2, (other_old_day, "acme"): 999, (dt.date(2025, 3, 19), "globex"): 1}


def test_on_an_older_day_only_the_company_days_new_rows_touch_are_recounted(wh: DuckDBWarehouse) -> None:
    load_fact_events(wh, [("e1", "acme", at(D, 1)), ("e2", "globex", at(D, 1))], NOW)
    refresh(wh, "r1")
    # A new row can only add to its own company-day, so globex's row on the same day is not
    # recounted: a refresh that recounted the whole day would repair the tampered count.
    wh.run_sql("UPDATE agg.company_daily_events SET event_count = 999 WHERE company_id = 'globex'")
    late = NOW + dt.timedelta(hours=1)
    load_fact_events(wh, [("e3", "acme", at(D, 5)), ("e1", "acme", at(D, 1))], late)  # new event, re-delivery
    assert D in refresh(wh, "r2", late)
    assert rollup(wh) == {(D, "acme"): 2, (D, "globex"): 999}


def test_only_company_days_whose_count_changed_are_written(wh: DuckDBWarehouse) -> None:
    load_fact_events(wh, [("e1", "acme", at(dt.date(2025, 3, 19), 1)), ("e2", "globex", at(D, 1))], NOW)
    refresh(wh, "r1")
    late = NOW + dt.timedelta(hours=1)
    # A new event in the look-back (18..20), recounted whole, and a re-delivery on day D, whose
    # company-day is recounted: acme's and globex's counts are unchanged, so not rewritten.
    load_fact_events(wh, [("e3", "initech", at(dt.date(2025, 3, 19), 2)), ("e2", "globex", at(D, 1))], late)
    assert D in refresh(wh, "r2", late)
    rows = wh.run_sql("SELECT company_id, event_count, run_id FROM agg.company_daily_events ORDER BY company_id")
    assert [(r["company_id"], r["event_count"], r["run_id"]) for r in rows] == [
        ("acme", 1, "r1"),
        ("globex", 1, "r1"),
        ("initech", 1, "r2"),
    ]


def test_a_copy_committed_behind_the_watermark_moves_the_event_within_the_look_back(wh: DuckDBWarehouse) -> None:
    day, earlier_day = dt.date(2025, 3, 19), dt.date(2025, 3, 18)
    load_fact_events(wh, [("e1", "acme", at(day, 1))], NOW)
    refresh(wh, "r1")
    # A concurrent loader's copy, stamped before the watermark but committed after the refresh:
    # it is the first delivered copy, so the event moves to its day and acme's day 19 vanishes.
    load_fact_events(wh, [("e1", "globex", at(earlier_day, 23))], NOW - dt.timedelta(hours=1))
    refresh(wh, "r2")
    assert rollup(wh) == {(earlier_day, "globex"): 1}


def test_refreshing_twice_gives_the_same_rows_and_moves_the_watermark(wh: DuckDBWarehouse) -> None:
    loaded = NOW - dt.timedelta(hours=1)
    load_fact_events(wh, [("e1", "acme", at(D, 1)), ("e2", "globex", at(D, 1))], loaded)
    first = refresh_company_daily_events(wh, "r1", NOW, lookback_days=2)
    before = rollup(wh)
    second = refresh_company_daily_events(wh, "r2", NOW, lookback_days=2)
    assert rollup(wh) == before == {(D, "acme"): 1, (D, "globex"): 1}
    assert first.loaded_through == second.loaded_through == loaded
    assert D in first.days and D not in second.days  # nothing new since the watermark
    assert wh.run_sql("SELECT COUNT(*) AS n FROM agg.company_daily_events_refresh_days")[0]["n"] == 0


# ---- reconciliation check ---------------------------------------------------------------------
def add_api_events(wh: DuckDBWarehouse, day: dt.date, events: dict[str, int]) -> None:
    wh.bulk_load(
        "stg.product_usage",
        ["activity_date", "company_id", "active_users", "events", "source_blob", "ingested_at", "run_id"],
        [(day, company, 1, count, "raw", NOW, "u") for company, count in events.items()],
    )


def reconcile(wh: DuckDBWarehouse, tolerance: float = 0.01) -> CheckResult:
    (check,) = checks_named("events_reconciliation")
    return evaluate(wh, check, D, NOW, Settings(events_reconciliation_tolerance=tolerance))


def test_reconciliation_passes_when_the_rollup_matches_the_api(wh: DuckDBWarehouse) -> None:
    load_fact_events(wh, [(f"e{i}", "acme", at(D, 1)) for i in range(100)], NOW)
    refresh(wh, "r1")
    add_api_events(wh, D, {"acme": 100, "idle": 0})
    result = reconcile(wh)
    assert (result.status, result.observed_value, result.reference_value) == ("pass", 0.0, 2.0)


def test_reconciliation_warns_on_company_days_beyond_the_tolerance(wh: DuckDBWarehouse) -> None:
    load_fact_events(wh, [(f"e{i}", "acme", at(D, 1)) for i in range(99)], NOW)
    load_fact_events(wh, [("x1", "rollup-only", at(D, 1))], NOW)
    refresh(wh, "r1")
    add_api_events(wh, D, {"acme": 100, "api-only": 4})
    strict = reconcile(wh, tolerance=0.0)
    assert (strict.status, strict.offending_rows, strict.observed_value) == ("warn", 3, 1.0)
    assert reconcile(wh, tolerance=0.02).offending_rows == 2  # acme's 1 % is within 2 %


def test_reconciliation_passes_with_a_note_when_the_date_has_no_rollup(wh: DuckDBWarehouse) -> None:
    add_api_events(wh, D, {"acme": 5})
    result = reconcile(wh)
    assert (result.status, result.note) == ("pass", "no_rollup")
