"""The run report's queries (sql/report) with expected rows written out, and the report command:
empty ranges, future dates, --json, escaping. Hand-inserted rows in an in-memory DuckDB warehouse;
the page in a real browser is tests/e2e/test_report_in_browser.py."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from pipeline_tools.cli import CliContext, cli
from pipeline_tools.report import write_report
from shared.adapters.warehouse.duckdb_engine import DuckDBWarehouse
from shared.errors import FutureDateRefused
from shared.settings import Settings
from shared.wiring import Resources

D1, D2, D3 = dt.date(2025, 3, 1), dt.date(2025, 3, 2), dt.date(2025, 3, 3)
NOW = dt.datetime(2025, 3, 10, 6, 0, tzinfo=dt.UTC)
AT = dt.datetime(2025, 3, 4, 6, 0)


def activity(wh: DuckDBWarehouse, day: dt.date, company: str, **values: Any) -> None:
    row: dict[str, Any] = {
        "activity_date": day,
        "company_id": company,
        "company_name": f"{company} Ltd",
        "active_users": 0,
        "events": 0,
        "active_users_7d": 0,
        "events_7d": 0,
        "active_days_7d": 0,
        "is_churn_risk": 0,
        "data_quality_flags": "",
        "record_loaded_at": AT,
        "run_id": "run-1",
        "active_users_28d": 0,
        "events_28d": 0,
        "events_prev_7d": 0,
        **values,
    }
    columns = ", ".join(row)
    wh.run_sql(
        f"INSERT INTO analytics.company_daily_activity ({columns}) VALUES ({', '.join('@' + c for c in row)})",
        row,
    )


def check(wh: DuckDBWarehouse, day: dt.date, name: str, status: str, at: dt.datetime, run_id: str) -> None:
    wh.run_sql(
        "INSERT INTO ops.data_quality_results (run_id, check_date, check_name, severity, status, message, "
        "checked_at) VALUES (@run, @d, @name, 'fail', @status, @msg, @at)",
        {"run": run_id, "d": day, "name": name, "status": status, "msg": f"{name} {status}", "at": at},
    )


def bounds(start: dt.date = D1, end: dt.date = D3) -> dict[str, dt.date]:
    return {"date_from": start, "date_to": end}


# ---- sql/report, expected rows written out ------------------------------------------------------
def test_daily_activity_sums_the_day_and_averages_the_window_columns(wh: DuckDBWarehouse) -> None:
    activity(
        wh,
        D2,
        "A",
        active_users=3,
        events=10,
        active_users_7d=14,
        events_7d=70,
        active_users_28d=56,
        events_28d=280,
        is_churn_risk=0,
        crm_snapshot_date=D2,
    )
    activity(
        wh,
        D2,
        "B",
        active_users=0,
        events=0,
        active_users_7d=0,
        events_7d=0,
        active_users_28d=28,
        events_28d=28,
        is_churn_risk=1,
        data_quality_flags="crm_stale",
        crm_snapshot_date=D1,
    )

    rows = wh.query("report/daily_activity", bounds())

    assert rows == [
        {
            "activity_date": D2,
            "row_count": 2,
            "active_users": 3,
            "events": 10,
            "active_users_7d_avg": 2.0,
            "active_users_28d_avg": 3.0,
            "events_7d_avg": 10.0,
            "events_28d_avg": 11.0,
            "rows_without_28d": 0,
            "churn_risk_companies": 1,
            "flagged_rows": 1,
            "crm_stale_rows": 1,
            "crm_snapshot_date": D2,
        }
    ]


def test_a_day_with_rows_built_before_the_28_day_columns_gets_no_partial_28_day_average(
    wh: DuckDBWarehouse,
) -> None:
    activity(wh, D1, "A", active_users_28d=28, events_28d=28)
    activity(wh, D1, "B", active_users_28d=None, events_28d=None)

    (row,) = wh.query("report/daily_activity", bounds())

    assert (row["active_users_28d_avg"], row["events_28d_avg"], row["rows_without_28d"]) == (None, None, 1)


def test_open_failures_are_the_checks_whose_latest_result_for_the_date_fails_or_errors(wh: DuckDBWarehouse) -> None:
    early, late = dt.datetime(2025, 3, 4, 1), dt.datetime(2025, 3, 4, 2)
    check(wh, D1, "row_count", "fail", early, "r1")
    check(wh, D1, "row_count", "pass", late, "r2")  # closed by a later pass
    check(wh, D1, "duplicate_keys", "pass", early, "r1")
    check(wh, D1, "duplicate_keys", "fail", late, "r2")  # failing now
    check(wh, D2, "api_total", "error", early, "r3")  # could not run
    check(wh, D2, "unknown_company_usage", "warn", early, "r3")  # a warning is not a failure

    rows = wh.query("report/open_check_failures", bounds())

    assert [(r["check_date"], r["check_name"], r["status"], r["run_id"]) for r in rows] == [
        (D2, "api_total", "error", "r3"),
        (D1, "duplicate_keys", "fail", "r2"),
    ]
    per_day = wh.query("report/check_results_per_day", bounds())
    assert [(r["check_date"], r["status"], r["checks"]) for r in per_day] == [
        (D1, "fail", 1),
        (D1, "pass", 1),
        (D2, "error", 1),
        (D2, "warn", 1),
    ]


def test_week_over_week_drops_rank_the_companies_whose_events_fell_most(wh: DuckDBWarehouse) -> None:
    activity(wh, D3, "A", events_7d=50, events_prev_7d=100, events_7d_change_pct=-50)
    activity(wh, D3, "B", events_7d=0, events_prev_7d=80, events_7d_change_pct=-100)
    activity(wh, D3, "C", events_7d=10, events_prev_7d=60, events_7d_change_pct=-83.33)  # same drop as A
    activity(wh, D3, "D", events_7d=90, events_prev_7d=10, events_7d_change_pct=800)  # rose: not a drop
    activity(wh, D2, "E", events_7d=0, events_prev_7d=999)  # another day

    rows = wh.query("report/week_over_week_drops", {"as_of": D3, "top_n": 2})

    assert [(r["drop_rank"], r["company_id"], r["events_drop"]) for r in rows] == [(1, "B", 80), (2, "A", 50)]
    everyone = wh.query("report/week_over_week_drops", {"as_of": D3, "top_n": 10})
    assert [r["company_id"] for r in everyone] == ["B", "A", "C"]


def test_input_arrivals_say_when_each_input_was_staged_after_the_day_ended(wh: DuckDBWarehouse) -> None:
    wh.run_sql(
        "INSERT INTO stg.crm_snapshots VALUES (@d, 'crm.csv', 'h', 5, 0, 0, @at, 'run')",
        {"d": D1, "at": dt.datetime(2025, 3, 2, 6, 30)},
    )
    wh.run_sql(
        "INSERT INTO stg.usage_pulls VALUES (@d, 'raw', 'h', 1, 4, 4, 0, 0, 0, @at, @at, 'run')",
        {"d": D1, "at": dt.datetime(2025, 3, 3, 1, 0)},
    )
    wh.run_sql(
        "INSERT INTO ops.quarantined_files VALUES ('crm_bad.csv', 'hb', 'rejected', @d, 'q', 'q.json', 'why', 0, "
        "@at, 'run')",
        {"d": D2, "at": AT},
    )

    rows = wh.query("report/input_arrivals", bounds())

    assert [
        (
            r["input_date"],
            r["crm_rows"],
            r["crm_hours_after_day_end"],
            r["usage_rows"],
            r["usage_hours_after_day_end"],
            r["quarantined_files"],
        )
        for r in rows
    ] == [(D1, 5, 6.5, 4, 25.0, 0), (D2, None, None, None, None, 1)]


# ---- writing the report ------------------------------------------------------------------------
def test_a_range_without_data_gets_a_page_that_says_so_and_no_chart(wh: DuckDBWarehouse, tmp_path: Path) -> None:
    written = write_report(wh, D1, D3, tmp_path, now=NOW, freshness_deadline_hours=30)

    page = written.html.read_text(encoding="utf-8")
    assert written.empty and written.pngs == [] and written.built_days == 0
    assert "No data in this range" in page and "Nothing was built between 2025-03-01 and 2025-03-03" in page
    assert "<svg" not in page


def test_a_range_with_inputs_but_no_built_day_still_charts_them(wh: DuckDBWarehouse, tmp_path: Path) -> None:
    wh.run_sql(
        "INSERT INTO stg.usage_pulls VALUES (@d, 'raw', 'h', 1, 4, 4, 0, 0, 0, @at, @at, 'run')",
        {"d": D2, "at": AT},
    )

    written = write_report(wh, D1, D3, tmp_path, now=NOW, freshness_deadline_hours=30)

    page = written.html.read_text(encoding="utf-8")
    assert (written.empty, written.built_days, len(written.pngs)) == (False, 0, 6)
    assert page.count('class="unbuilt"') == 3 and "0 / 3" in page


def test_future_dates_are_refused_and_nothing_is_written(wh: DuckDBWarehouse, tmp_path: Path) -> None:
    with pytest.raises(FutureDateRefused, match="2025-03-10 is in the future"):
        write_report(wh, D1, dt.date(2025, 3, 10), tmp_path / "out", now=NOW, freshness_deadline_hours=30)
    assert not (tmp_path / "out").exists()


def test_company_names_are_escaped_in_the_tables_and_in_the_charts(wh: DuckDBWarehouse, tmp_path: Path) -> None:
    evil = '<script>alert("x")</script>'
    activity(wh, D2, "A", company_name=evil, events_7d=1, events_prev_7d=9, events_7d_change_pct=-88.89)

    written = write_report(wh, D1, D3, tmp_path, now=NOW, freshness_deadline_hours=30)

    page = written.html.read_text(encoding="utf-8")
    assert "<script" not in page
    assert page.count("&lt;script&gt;") >= 2  # the drops table and the drops chart's axis label
    assert len(written.pngs) == 6


# ---- the command -------------------------------------------------------------------------------
def invoke(wh: DuckDBWarehouse, *args: str) -> Result:
    resources = Resources(Settings(), warehouse=wh)
    return CliRunner().invoke(cli, list(args), obj=CliContext(_resources=resources))


def test_report_json_prints_what_was_written(wh: DuckDBWarehouse, tmp_path: Path) -> None:
    activity(wh, D1, "A", active_users=2, events=5)
    activity(wh, D2, "A", active_users=1, events=3)

    result = invoke(wh, "report", "--start", str(D1), "--end", str(D3), "--out-dir", str(tmp_path), "--json")

    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    assert printed["start"] == "2025-03-01" and printed["end"] == "2025-03-03"
    assert (printed["days"], printed["built_days"], printed["empty"]) == (3, 2, False)
    assert printed["html"] == str(tmp_path / "report.html")
    assert sorted(Path(p).name for p in printed["pngs"]) == [
        "active_users.png",
        "churn_risk.png",
        "events.png",
        "input_freshness.png",
        "rows_and_checks.png",
        "week_over_week_drops.png",
    ]
    assert all(Path(p).stat().st_size > 10_000 for p in printed["pngs"])
    assert len(list(tmp_path.iterdir())) == 7, "the page and six PNGs, no partial file left"


def test_report_of_an_empty_range_says_so(wh: DuckDBWarehouse, tmp_path: Path) -> None:
    result = invoke(wh, "report", "--date", str(D1), "--out-dir", str(tmp_path))

    assert result.exit_code == 0, result.output
    assert result.output.startswith("no data for 2025-03-01: nothing built")


def test_report_refuses_a_future_date_in_one_line_as_bad_usage(wh: DuckDBWarehouse, tmp_path: Path) -> None:
    tomorrow = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)

    result = invoke(wh, "report", "--date", str(tomorrow), "--out-dir", str(tmp_path))

    assert result.exit_code == 2  # the CLI's rule: a date after yesterday is bad usage
    assert result.output.strip().startswith(f"error: {tomorrow} is in the future")
