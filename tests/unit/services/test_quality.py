"""run_checks: results stored per date and run, dq_ flags on rows, one alert per violated check."""

from __future__ import annotations

import datetime as dt

import pytest

from shared.adapters.warehouse.duckdb_engine import DuckDBWarehouse
from shared.services.alerts import RecordingAlertSink
from shared.services.quality import (
    CHECKS,
    CheckResult,
    checks_named,
    merge_flags,
    quality_alerts,
    run_checks,
)
from shared.settings import Settings

D1 = dt.date(2025, 3, 10)
D2 = dt.date(2025, 3, 11)
NOW = dt.datetime(2025, 3, 12, 2, 0)
SETTINGS = Settings(pipeline_name="company-activity")


def add_activity(wh: DuckDBWarehouse, day: dt.date, company_id: str, events: int = 1, flags: str = "") -> None:
    wh.run_sql(
        "INSERT INTO analytics.company_daily_activity (activity_date, company_id, active_users, events, "
        "active_users_7d, events_7d, active_days_7d, days_since_last_activity, is_churn_risk, data_quality_flags, "
        "record_loaded_at, run_id) VALUES (@d, @c, 1, @events, 1, 1, 1, 0, 0, @flags, @now, 'build')",
        {"d": day, "c": company_id, "events": events, "flags": flags, "now": NOW},
    )


def flags_of(wh: DuckDBWarehouse, day: dt.date) -> dict[str, str]:
    rows = wh.run_sql(
        "SELECT company_id, data_quality_flags FROM analytics.company_daily_activity WHERE activity_date = @d",
        {"d": day},
    )
    return {r["company_id"]: r["data_quality_flags"] for r in rows}


def stored(wh: DuckDBWarehouse, run_id: str) -> list[dict]:
    return wh.run_sql(
        "SELECT check_date, check_name, status, severity, observed_value, message FROM ops.data_quality_results "
        "WHERE run_id = @run_id ORDER BY check_date, check_name",
        {"run_id": run_id},
    )


# ---- merge_flags (pure) -----------------------------------------------------------------------
def test_merge_flags_keeps_the_list_sorted_and_without_repeats() -> None:
    assert merge_flags("unknown_company,crm_stale", add={"dq_b", "dq_a", "crm_stale"}) == (
        "crm_stale,dq_a,dq_b,unknown_company"
    )


def test_merge_flags_removes_only_what_it_is_asked_to() -> None:
    assert merge_flags("crm_stale,dq_a,dq_b", remove={"dq_a", "dq_c"}) == "crm_stale,dq_b"


def test_merge_flags_of_an_empty_list_and_nothing_to_add_is_empty() -> None:
    assert merge_flags("", add=(), remove={"dq_a"}) == ""
    assert merge_flags(" , dq_a ,", add=()) == "dq_a"


# ---- run_checks -------------------------------------------------------------------------------
def test_every_check_is_stored_for_every_date_of_the_run(wh: DuckDBWarehouse) -> None:
    add_activity(wh, D1, "acme")
    add_activity(wh, D2, "acme")
    results = run_checks(wh, [D2, D1, D2], "run-1", NOW, SETTINGS, RecordingAlertSink())
    assert len(results) == 2 * len(CHECKS)
    rows = stored(wh, "run-1")
    assert [(r["check_date"], r["check_name"]) for r in rows] == sorted(
        (day, check.name) for day in (D1, D2) for check in CHECKS
    )
    assert all(r["message"] for r in rows)


def test_a_failing_check_flags_the_dates_rows_without_touching_other_dates(wh: DuckDBWarehouse) -> None:
    add_activity(wh, D1, "acme", flags="crm_stale")
    add_activity(wh, D1, "globex")
    add_activity(wh, D1, "acme ")  # the same key as "acme" on Azure SQL (trailing spaces ignored)
    add_activity(wh, D2, "acme")
    run_checks(wh, [D1], "run-1", NOW, SETTINGS, RecordingAlertSink(), checks_named("analytics_duplicate_keys"))
    assert flags_of(wh, D1) == {
        "acme": "crm_stale,dq_analytics_duplicate_keys",
        "globex": "dq_analytics_duplicate_keys",
        "acme ": "dq_analytics_duplicate_keys",
    }
    assert flags_of(wh, D2) == {"acme": ""}


def test_rerunning_the_checks_of_a_run_replaces_its_results_and_keeps_flags_single(wh: DuckDBWarehouse) -> None:
    add_activity(wh, D1, "acme", events=-1)
    selected = checks_named("activity_negative_counts", "analytics_row_count")
    for _ in range(2):
        run_checks(wh, [D1], "run-1", NOW, SETTINGS, RecordingAlertSink(), selected)
    assert [(r["check_name"], r["status"]) for r in stored(wh, "run-1")] == [
        ("activity_negative_counts", "fail"),
        ("analytics_row_count", "pass"),
    ]
    assert flags_of(wh, D1) == {"acme": "dq_activity_negative_counts"}


def test_a_check_that_passes_again_clears_its_flag_but_not_the_builders(wh: DuckDBWarehouse) -> None:
    add_activity(wh, D1, "acme", flags="dq_activity_negative_counts,unknown_company")
    run_checks(wh, [D1], "run-2", NOW, SETTINGS, RecordingAlertSink(), checks_named("activity_negative_counts"))
    assert flags_of(wh, D1) == {"acme": "unknown_company"}


def test_a_warning_does_not_flag_rows(wh: DuckDBWarehouse) -> None:
    wh.run_sql(
        "INSERT INTO analytics.company_daily_activity (activity_date, company_id, active_users, events, "
        "active_users_7d, events_7d, active_days_7d, is_churn_risk, data_quality_flags, record_loaded_at, run_id) "
        "VALUES (@d, 'bot', 0, 5, 0, 5, 0, 0, '', @now, 'build')",
        {"d": D1, "now": NOW},
    )
    results = run_checks(
        wh, [D1], "run-1", NOW, SETTINGS, RecordingAlertSink(), checks_named("activity_events_without_users")
    )
    assert results[0].status == "warn"
    assert flags_of(wh, D1) == {"bot": ""}


def test_checks_never_delete_rows(wh: DuckDBWarehouse) -> None:
    for company in ("a", "b", "c"):
        add_activity(wh, D1, company, events=-1)
    run_checks(wh, [D1], "run-1", NOW, SETTINGS, RecordingAlertSink())
    assert len(flags_of(wh, D1)) == 3


def test_one_alert_per_violated_check_with_the_run_id_and_date(wh: DuckDBWarehouse) -> None:
    add_activity(wh, D2, "acme", events=-1)
    sink = RecordingAlertSink()
    run_checks(
        wh, [D1, D2], "run-7", NOW, SETTINGS, sink, checks_named("analytics_row_count", "activity_negative_counts")
    )
    by_title = {a.title: a for a in sink.alerts}
    assert set(by_title) == {
        "data-quality check analytics_row_count: fail",  # D1 has no rows
        "data-quality check activity_negative_counts: fail",  # D2 has a negative count
    }
    alert = by_title["data-quality check activity_negative_counts: fail"]
    assert (alert.step, alert.run_id, alert.date, alert.severity) == ("quality", "run-7", D2, "error")
    assert alert.facts["Check"] == "activity_negative_counts"
    assert "1 rows with a negative count" in alert.message


def test_passing_checks_raise_no_alert(wh: DuckDBWarehouse) -> None:
    add_activity(wh, D1, "acme")
    sink = RecordingAlertSink()
    run_checks(wh, [D1], "run-1", NOW, SETTINGS, sink, checks_named("analytics_row_count", "analytics_duplicate_keys"))
    assert sink.alerts == []


def test_a_check_that_cannot_run_is_recorded_as_error_and_alerted_without_failing_the_run(
    wh: DuckDBWarehouse,
) -> None:
    add_activity(wh, D1, "acme")
    wh.run_sql("DROP TABLE stg.usage_pulls")
    sink = RecordingAlertSink()
    results = run_checks(wh, [D1], "run-1", NOW, SETTINGS, sink, checks_named("usage_api_total", "analytics_row_count"))
    assert [(r.check_name, r.status) for r in results] == [
        ("usage_api_total", "error"),
        ("analytics_row_count", "pass"),
    ]
    assert results[0].message == "check could not run (BuildError)"
    assert [a.title for a in sink.alerts] == ["data-quality check usage_api_total: error"]


def test_an_alert_sink_that_raises_does_not_fail_the_checks(wh: DuckDBWarehouse) -> None:
    class BrokenSink:
        def send(self, alert: object) -> None:
            raise RuntimeError("sink down")

    results = run_checks(wh, [D1], "run-1", NOW, SETTINGS, BrokenSink(), checks_named("analytics_row_count"))
    assert results[0].status == "fail"


def test_aware_now_is_read_as_utc(wh: DuckDBWarehouse) -> None:
    wh.run_sql(
        "INSERT INTO stg.usage_pulls (activity_date, raw_blob, content_hash, page_count, api_record_count, "
        "staged_row_count, rejected_record_count, duplicate_record_count, conflicting_record_count, fetched_at, "
        "ingested_at, run_id) VALUES (@d, 'r', 'h', 1, 0, 0, 0, 0, 0, @now, @now, 'u')",
        {"d": D1, "now": NOW},
    )
    # 2025-03-12 08:00+02:00 is 06:00 UTC: exactly the 30 h deadline after D1 ended.
    aware = dt.datetime(2025, 3, 12, 8, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    (result,) = run_checks(wh, [D1], "run-1", aware, SETTINGS, RecordingAlertSink(), checks_named("input_freshness"))
    assert (result.status, result.observed_value) == ("fail", 30.0)


# ---- alert grouping (pure) --------------------------------------------------------------------
def _result(day: dt.date, status: str = "fail", name: str = "analytics_row_count") -> CheckResult:
    return CheckResult(name, day, "fail", status, f"message of {day}", observed_value=0.0, threshold=0.0)  # type: ignore[arg-type]


def test_a_backfill_raises_one_alert_per_check_listing_a_few_dates() -> None:
    days = [dt.date(2025, 1, 1) + dt.timedelta(days=i) for i in range(30)]
    (alert,) = quality_alerts([_result(day) for day in days], "company-activity", "run-9")
    assert alert.date is None
    assert alert.facts["Dates"] == "2025-01-01..2025-01-30 (30 dates)"
    assert alert.message.count("message of") == 5
    assert alert.message.endswith("and 25 more date(s)")


def test_warnings_alone_raise_a_warning_alert() -> None:
    (alert,) = quality_alerts([_result(D1, "warn", "unknown_company_usage")], "p", "r")
    assert (alert.severity, alert.title, alert.date) == (
        "warning",
        "data-quality check unknown_company_usage: warn",
        D1,
    )


def test_unknown_check_names_are_refused() -> None:
    with pytest.raises(ValueError, match="no_such_check"):
        checks_named("no_such_check")
