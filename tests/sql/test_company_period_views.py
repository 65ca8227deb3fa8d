"""analytics.company_weekly_activity and analytics.company_monthly_activity (SPEC section 4) on DuckDB.

The views read the daily rows only, so the tests write daily rows as builds would leave them:
a day that is not built, or on which a company is not in the spine, has no row. Expected rows
are written out.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from shared.adapters.warehouse.duckdb_engine import DuckDBWarehouse

D = dt.date
# (day, company, name, active_users, events, days_since_last_activity, is_churn_risk)
DAILY_ROWS = [
    (D(2024, 12, 27), "acme", "Acme", 2, 10, 0, False),  # Friday of ISO week 2024-W52
    (D(2024, 12, 30), "acme", "Acme", 1, 5, 0, False),  # Monday of 2025-W01
    (D(2024, 12, 31), "acme", "Acme", 0, 3, 0, False),  # events, no active users: not an active day
    # 2025-01-01 is not built: absent for everyone.
    (D(2025, 1, 2), "acme", "Acme Group", 4, 0, 0, False),  # renamed
    (D(2025, 1, 6), "acme", "Acme Group", 0, 0, 4, True),  # 2025-W02 so far: only its Monday
    (D(2025, 2, 3), "acme", "Acme Group", 1, 1, 0, False),  # February: 28 days
    (D(2024, 12, 30), "zeta", "Zeta", 0, 0, 20, True),
    (D(2024, 12, 31), "zeta", "Zeta", 3, 30, 0, False),  # then leaves the CRM
]


@pytest.fixture
def daily(wh: DuckDBWarehouse) -> DuckDBWarehouse:
    for on, company, name, users, events, since, churn in DAILY_ROWS:
        wh.run_sql(
            "INSERT INTO analytics.company_daily_activity (activity_date, company_id, company_name, country,"
            " industry_tag, active_users, events, active_users_7d, events_7d, active_days_7d,"
            " days_since_last_activity, is_churn_risk, crm_snapshot_date, data_quality_flags, record_loaded_at,"
            " run_id) VALUES (@d, @c, @name, 'DE', 'saas', @users, @events, 0, 0, 0, @since, @churn, @d, '', @at,"
            " 'r1')",
            {
                "d": on,
                "c": company,
                "name": name,
                "users": users,
                "events": events,
                "since": since,
                "churn": churn,
                "at": dt.datetime(2025, 3, 1),
            },
        )
    return wh


def _rows(wh: DuckDBWarehouse, view: str, columns: str) -> list[tuple[Any, ...]]:
    return [tuple(r.values()) for r in wh.run_sql(f"SELECT {columns} FROM analytics.{view} ORDER BY 3, company_id")]


def test_weekly_rows_are_iso_weeks_with_gaps_and_partial_weeks(daily: DuckDBWarehouse) -> None:
    columns = (
        "iso_year, iso_week, week_start, week_end, company_id, company_name, active_users, events, active_days,"
        " days_present, days_in_period, last_date_present, days_since_last_activity, is_churn_risk"
    )
    assert _rows(daily, "company_weekly_activity", columns) == [
        (2024, 52, D(2024, 12, 23), D(2024, 12, 29), "acme", "Acme", 2, 10, 1, 1, 7, D(2024, 12, 27), 0, False),
        # 2025-W01 starts in December; Wednesday is not built; the name is Thursday's.
        (2025, 1, D(2024, 12, 30), D(2025, 1, 5), "acme", "Acme Group", 5, 8, 2, 3, 7, D(2025, 1, 2), 0, False),
        (2025, 1, D(2024, 12, 30), D(2025, 1, 5), "zeta", "Zeta", 3, 30, 1, 2, 7, D(2024, 12, 31), 0, False),
        # The current week, built up to its Monday: churn risk is Monday's.
        (2025, 2, D(2025, 1, 6), D(2025, 1, 12), "acme", "Acme Group", 0, 0, 0, 1, 7, D(2025, 1, 6), 4, True),
        (2025, 6, D(2025, 2, 3), D(2025, 2, 9), "acme", "Acme Group", 1, 1, 1, 1, 7, D(2025, 2, 3), 0, False),
    ]


def test_monthly_rows_are_calendar_months_with_gaps_and_partial_months(daily: DuckDBWarehouse) -> None:
    columns = (
        "calendar_year, calendar_month, month_start, month_end, company_id, company_name, active_users, events,"
        " active_days, days_present, days_in_period, last_date_present, days_since_last_activity, is_churn_risk"
    )
    assert _rows(daily, "company_monthly_activity", columns) == [
        (2024, 12, D(2024, 12, 1), D(2024, 12, 31), "acme", "Acme", 3, 18, 2, 3, 31, D(2024, 12, 31), 0, False),
        (2024, 12, D(2024, 12, 1), D(2024, 12, 31), "zeta", "Zeta", 3, 30, 1, 2, 31, D(2024, 12, 31), 0, False),
        (2025, 1, D(2025, 1, 1), D(2025, 1, 31), "acme", "Acme Group", 4, 0, 1, 2, 31, D(2025, 1, 6), 4, True),
        (2025, 2, D(2025, 2, 1), D(2025, 2, 28), "acme", "Acme Group", 1, 1, 1, 1, 28, D(2025, 2, 3), 0, False),
    ]


@pytest.mark.parametrize("view", ["company_weekly_activity", "company_monthly_activity"])
def test_period_sums_agree_with_the_daily_table(daily: DuckDBWarehouse, view: str) -> None:
    (periods,) = daily.run_sql(
        f"SELECT SUM(active_users) AS users, SUM(events) AS events, SUM(days_present) AS days FROM analytics.{view}"
    )
    (days,) = daily.run_sql(
        "SELECT SUM(active_users) AS users, SUM(events) AS events, COUNT(*) AS days"
        " FROM analytics.company_daily_activity"
    )
    assert periods == days == {"users": 11, "events": 49, "days": 8}


def test_views_carry_the_last_present_days_attributes_and_snapshot(daily: DuckDBWarehouse) -> None:
    (week,) = daily.run_sql(
        "SELECT country, industry_tag, last_contact_at, crm_snapshot_date FROM analytics.company_weekly_activity"
        " WHERE company_id = 'acme' AND week_start = @w",
        {"w": D(2024, 12, 30)},
    )
    assert week == {
        "country": "DE",
        "industry_tag": "saas",
        "last_contact_at": None,
        "crm_snapshot_date": D(2025, 1, 2),
    }


def test_views_are_empty_over_an_empty_table(wh: DuckDBWarehouse) -> None:
    assert wh.run_sql("SELECT * FROM analytics.company_weekly_activity") == []
    assert wh.run_sql("SELECT * FROM analytics.company_monthly_activity") == []
