"""Events rollup on DuckDB: UTC days, de-duplication by event_id, new rows counted onto the
stored counts, the company-days of the load-time look-back recounted, and the reconciliation
check against the API's daily events."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.adapters.warehouse.duckdb_engine import DuckDBWarehouse
from shared.errors import RejectedInput
from shared.services import events_rollup
from shared.services.events_rollup import (
    DEDUP_WINDOW_DAYS,
    load_fact_events,
    recount_from,
    refresh_company_daily_events,
    utc_event_time,
)
from shared.services.quality import CheckResult, checks_named, evaluate
from shared.settings import Settings

D = dt.date(2025, 3, 10)
NOW = dt.datetime(2025, 3, 20, 2, 0)
LOOKBACK = dt.timedelta(hours=1)


# The company and day of unrelated rows that move the watermark on (left out of rollup()).
OTHER, OTHER_DAY = "zz-other", D - dt.timedelta(days=30)


def rollup(wh: DuckDBWarehouse) -> dict[tuple[dt.date, str], int]:
    rows = wh.run_sql(
        "SELECT activity_date, company_id, event_count FROM agg.company_daily_events WHERE company_id <> @other",
        {"other": OTHER},
    )
    return {(r["activity_date"], r["company_id"]): r["event_count"] for r in rows}


def pass_the_look_back(wh: DuckDBWarehouse, after: dt.datetime) -> dt.datetime:
    """Load and count an unrelated row two look-backs after ``after``, so the rows loaded up to
    ``after`` are behind the look-back from then on; returns its load time."""
    later = after + 2 * LOOKBACK
    load_fact_events(wh, [("tick", OTHER, at(OTHER_DAY, 0))], later)
    refresh_company_daily_events(wh, "tick", later, LOOKBACK)
    return later


def refresh(
    wh: DuckDBWarehouse, run_id: str, now: dt.datetime = NOW, lookback: dt.timedelta = LOOKBACK
) -> list[dt.date]:
    return refresh_company_daily_events(wh, run_id, now, lookback).days


def at(day: dt.date, hour: int) -> str:
    return f"{day.isoformat()}T{hour:02d}:00:00Z"


# ---- pure parts -------------------------------------------------------------------------------
def test_event_times_with_an_offset_are_converted_to_utc() -> None:
    assert utc_event_time("2025-03-10T23:30:00-02:00") == dt.datetime(2025, 3, 11, 1, 30)
    assert utc_event_time("2025-03-10T23:30:00Z") == dt.datetime(2025, 3, 10, 23, 30)
    assert utc_event_time("2025-03-10 23:30:00") == dt.datetime(2025, 3, 10, 23, 30)  # naive is UTC
    with pytest.raises(RejectedInput):
        utc_event_time("yesterday")


def test_rows_are_read_from_the_look_back_before_the_watermark_or_all_before_the_first_refresh() -> None:
    assert recount_from(NOW, LOOKBACK) == NOW - LOOKBACK
    assert recount_from(None, LOOKBACK) is None


# ---- loading ----------------------------------------------------------------------------------
def test_a_load_that_leaves_a_large_log_writes_it_out_itself(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On DuckDB a load leaving more than LOAD_LOG_BYTES in the write-ahead log checkpoints it,
    so the next commit (the refresh's) does not write the loads' rows out; inside a
    transaction it cannot, and leaves the log to the commit."""
    engine = DuckDBWarehouse(tmp_path / "w.duckdb")
    engine.apply_schema()
    log = tmp_path / "w.duckdb.wal"
    try:
        monkeypatch.setattr(events_rollup, "LOAD_LOG_BYTES", 1 << 30)
        load_fact_events(engine, [("e1", "acme", at(D, 1))], NOW)
        assert log.stat().st_size > 0
        monkeypatch.setattr(events_rollup, "LOAD_LOG_BYTES", 0)
        with engine.transaction():
            load_fact_events(engine, [("e2", "acme", at(D, 2))], NOW)
        assert log.stat().st_size > 0
        load_fact_events(engine, [("e3", "acme", at(D, 3))], NOW)
        assert not log.exists() or log.stat().st_size == 0
        assert engine.run_sql("SELECT COUNT(*) AS n FROM agg.fact_events")[0]["n"] == 3
    finally:
        engine.close()


def test_an_in_memory_warehouse_has_no_log_to_write_out(wh: DuckDBWarehouse) -> None:
    assert not wh.write_out_log(0)


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


def test_only_the_company_days_of_new_rows_are_counted(wh: DuckDBWarehouse) -> None:
    old_day, other_old_day = D, D - dt.timedelta(days=3)
    load_fact_events(wh, [("e1", "acme", at(old_day, 1)), ("e2", "acme", at(other_old_day, 1))], NOW)
    refresh(wh, "r1")
    late = pass_the_look_back(wh, NOW) + dt.timedelta(hours=1)
    # Tamper with an untouched day: a refresh that rescanned history would repair it.
    wh.run_sql("UPDATE agg.company_daily_events SET event_count = 999 WHERE activity_date = @d", {"d": other_old_day})
    load_fact_events(wh, [("e3", "acme", at(old_day, 5)), ("e4", "globex", at(dt.date(2025, 3, 19), 5))], late)
    # The tick's row is in the look-back, its day among those counted on.
    assert refresh(wh, "r2", late) == [OTHER_DAY, old_day, dt.date(2025, 3, 19)]
    assert rollup(wh) == {(old_day, "acme"): 2, (other_old_day, "acme"): 999, (dt.date(2025, 3, 19), "globex"): 1}


def test_new_rows_add_their_first_copies_to_the_stored_count(wh: DuckDBWarehouse) -> None:
    load_fact_events(wh, [("e1", "acme", at(D, 1)), ("e2", "globex", at(D, 1))], NOW)
    refresh(wh, "r1")
    late = pass_the_look_back(wh, NOW) + dt.timedelta(hours=1)
    # A new row was loaded after every counted row, so it can only add to its own company-day:
    # the stored counts are trusted, not recounted, and globex's is not even read.
    wh.run_sql("UPDATE agg.company_daily_events SET event_count = 10 WHERE company_id = 'acme'")
    wh.run_sql("UPDATE agg.company_daily_events SET event_count = 999 WHERE company_id = 'globex'")
    # A new event loaded twice (identical copies), and a re-delivery of one already counted.
    load_fact_events(wh, [("e3", "acme", at(D, 5)), ("e1", "acme", at(D, 1)), ("e3", "acme", at(D, 5))], late)
    assert refresh(wh, "r2", late) == [OTHER_DAY, D]
    assert rollup(wh) == {(D, "acme"): 11, (D, "globex"): 999}


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
    load_fact_events(wh, [("e1", "globex", at(earlier_day, 23))], NOW - LOOKBACK / 2)
    refresh(wh, "r2")
    assert rollup(wh) == {(earlier_day, "globex"): 1}


def test_a_row_committed_behind_the_watermark_is_counted_whatever_its_day(wh: DuckDBWarehouse) -> None:
    load_fact_events(wh, [("e1", "acme", at(dt.date(2025, 3, 19), 1))], NOW)
    refresh(wh, "r1")
    long_ago = dt.date(2025, 1, 5)
    load_fact_events(wh, [("e2", "globex", at(long_ago, 8))], NOW - LOOKBACK / 2)  # committed after r1
    assert long_ago in refresh(wh, "r2", NOW + dt.timedelta(hours=3))
    assert rollup(wh) == {(dt.date(2025, 3, 19), "acme"): 1, (long_ago, "globex"): 1}


def test_a_row_committed_further_behind_than_the_look_back_needs_a_longer_one(wh: DuckDBWarehouse) -> None:
    load_fact_events(wh, [("e1", "acme", at(D, 1))], NOW)
    refresh(wh, "r1")
    load_fact_events(wh, [("e2", "globex", at(D, 2))], NOW - 2 * LOOKBACK)
    refresh(wh, "r2")
    assert rollup(wh) == {(D, "acme"): 1}  # the documented limit
    refresh(wh, "r3", lookback=3 * LOOKBACK)  # what an operator runs to recount further back
    assert rollup(wh) == {(D, "acme"): 1, (D, "globex"): 1}


def test_copies_loaded_together_count_on_the_earlier_timestamp_then_the_lower_company(wh: DuckDBWarehouse) -> None:
    next_day = D + dt.timedelta(days=1)
    load_fact_events(
        wh,
        [
            ("e1", "acme", at(next_day, 1)),  # same load time: the earlier timestamp is the first copy
            ("e1", "acme", at(D, 23)),
            ("e2", "initech", at(D, 5)),  # same load time and timestamp: the lower company_id
            ("e2", "globex", at(D, 5)),
        ],
        NOW,
    )
    refresh(wh, "r1")
    assert rollup(wh) == {(D, "acme"): 1, (D, "globex"): 1}


def test_refreshing_twice_gives_the_same_rows_and_moves_the_watermark(wh: DuckDBWarehouse) -> None:
    loaded = NOW - dt.timedelta(hours=1)
    load_fact_events(wh, [("e1", "acme", at(D, 1)), ("e2", "globex", at(D, 1))], loaded)
    first = refresh_company_daily_events(wh, "r1", NOW, LOOKBACK)
    before = rollup(wh)
    second = refresh_company_daily_events(wh, "r2", NOW, LOOKBACK)
    assert rollup(wh) == before == {(D, "acme"): 1, (D, "globex"): 1}
    assert first.loaded_through == second.loaded_through == loaded
    # Nothing new: the rows of the look-back are recounted again, and nothing is rewritten.
    assert first.days == second.days == [D]
    assert {r["run_id"] for r in wh.run_sql("SELECT run_id FROM agg.company_daily_events")} == {"r1"}
    assert wh.run_sql("SELECT COUNT(*) AS n FROM agg.company_daily_events_refresh_days")[0]["n"] == 0
    assert wh.run_sql("SELECT COUNT(*) AS n FROM agg.company_daily_events_refresh_counts")[0]["n"] == 0


# ---- the rollup against a reference -------------------------------------------------------------
class Row(NamedTuple):
    event_id: str
    company_id: str
    event_ts: dt.datetime
    loaded_at: dt.datetime


def reference_rollup(rows: list[Row]) -> dict[tuple[dt.date, str], int]:
    """The rule read literally: a row counts, on its UTC day, unless another copy within the
    window was delivered first (earlier load time, then timestamp, then company); an event id
    counts once per company-day."""
    counted: dict[tuple[dt.date, str], set[str]] = defaultdict(set)
    for row in rows:
        day = row.event_ts.date()
        first = (row.loaded_at, row.event_ts, row.company_id)
        if not any(
            other.event_id == row.event_id
            and abs((other.event_ts.date() - day).days) <= DEDUP_WINDOW_DAYS
            and (other.loaded_at, other.event_ts, other.company_id) < first
            for other in rows
        ):
            counted[(day, row.company_id)].add(row.event_id)
    return {key: len(ids) for key, ids in counted.items()}


_event = st.tuples(
    st.sampled_from(["e1", "e2", "e3", "e4", "e5"]),
    st.sampled_from(["acme", "globex"]),
    st.integers(0, 12),  # day
    st.sampled_from([0, 12, 23]),  # hour
)
# A load: its events, and how it is stamped: 0 = after the watermark (1-3 hours later), else a
# concurrent loader's commit that many minutes behind the watermark (within the look-back).
_loads = st.lists(
    st.tuples(st.lists(_event, min_size=1, max_size=6), st.integers(1, 3), st.sampled_from([0, 0, 0, 10, 59])),
    min_size=1,
    max_size=6,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(loads=_loads)
def test_property_refreshing_after_every_load_gives_the_rule_over_every_row(
    loads: list[tuple[list[tuple[str, str, int, int]], int, int]],
) -> None:
    """Loads (re-deliveries, copies days apart, identical copies, loads committed behind the
    watermark within the look-back), each followed by a refresh: the rollup always equals the
    rule applied to every row loaded so far."""
    engine = DuckDBWarehouse(":memory:")
    engine.apply_schema()
    try:
        rows: list[Row] = []
        watermark = NOW
        for i, (events, hours_later, minutes_behind) in enumerate(loads):
            if minutes_behind and rows:
                loaded_at = watermark - dt.timedelta(minutes=minutes_behind)
            else:
                watermark = loaded_at = watermark + dt.timedelta(hours=hours_later)
            batch = [
                Row(e, c, dt.datetime.combine(D + dt.timedelta(days=day), dt.time(hour)), loaded_at)
                for e, c, day, hour in events
            ]
            load_fact_events(engine, [(r.event_id, r.company_id, r.event_ts) for r in batch], loaded_at)
            rows += batch
            refresh_company_daily_events(engine, f"r{i}", watermark, LOOKBACK)
            assert rollup(engine) == reference_rollup(rows)
    finally:
        engine.close()


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
