"""Each data-quality check passes on good data and fails (or warns) on bad data, on DuckDB.

Test data is written straight into the staging and analytics tables; expected observations
are worked out by hand in each test.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import pytest

from shared.adapters.warehouse.duckdb_engine import DuckDBWarehouse
from shared.adapters.warehouse.translate import UNIQUE_KEYS_CHECKED
from shared.services.quality import CheckResult, checks_named, evaluate
from shared.settings import Settings

D = dt.date(2025, 3, 10)
LOADED_AT = dt.datetime(2025, 3, 11, 2, 0)
NOW = dt.datetime(2025, 3, 11, 3, 0)  # 3 h after D ended
SETTINGS = Settings(
    quality_row_drop_threshold=0.10,
    quality_api_total_tolerance=0.0,
    quality_unknown_company_share_warn=0.05,
    freshness_deadline_hours=30,
)


# ---- writing test data ------------------------------------------------------------------------
def add_activity(
    wh: DuckDBWarehouse,
    day: dt.date,
    company_ids: Iterable[str],
    *,
    active_users: int = 3,
    events: int = 10,
    active_users_7d: int = 9,
    events_7d: int = 40,
    active_days_7d: int = 3,
    days_since_last_activity: int | None = 0,
    flags: str = "",
    wide: tuple[int, int, int, int] | None = None,  # active_users_28d, events_28d, active_days_28d, events_prev_7d
) -> None:
    for company_id in company_ids:
        wh.run_sql(
            "INSERT INTO analytics.company_daily_activity (activity_date, company_id, active_users, events, "
            "active_users_7d, events_7d, active_days_7d, days_since_last_activity, is_churn_risk, "
            "data_quality_flags, record_loaded_at, run_id, active_users_28d, events_28d, active_days_28d, "
            "events_prev_7d) VALUES (@d, @c, @au, @ev, @au7, @ev7, @ad7, @dsla, "
            "0, @flags, @loaded, 'build-run', @au28, @ev28, @ad28, @evp7)",
            {
                "d": day,
                "c": company_id,
                "au": active_users,
                "ev": events,
                "au7": active_users_7d,
                "ev7": events_7d,
                "ad7": active_days_7d,
                "dsla": days_since_last_activity,
                "flags": flags,
                "loaded": LOADED_AT,
                **dict(zip(("au28", "ev28", "ad28", "evp7"), wide or (None,) * 4, strict=True)),
            },
        )


def add_usage(wh: DuckDBWarehouse, day: dt.date, company_ids: Iterable[str]) -> None:
    rows = [(day, c, 2, 5, "usage-raw/x.ndjson", LOADED_AT, "usage-run") for c in company_ids]
    wh.bulk_load(
        "stg.product_usage",
        ["activity_date", "company_id", "active_users", "events", "source_blob", "ingested_at", "run_id"],
        rows,
    )


def add_usage_pull(
    wh: DuckDBWarehouse, day: dt.date, api: int, rejected: int = 0, duplicates: int = 0, conflicts: int = 0
) -> None:
    wh.bulk_load(
        "stg.usage_pulls",
        [
            "activity_date",
            "raw_blob",
            "content_hash",
            "page_count",
            "api_record_count",
            "staged_row_count",
            "rejected_record_count",
            "duplicate_record_count",
            "conflicting_record_count",
            "fetched_at",
            "ingested_at",
            "run_id",
        ],
        [(day, "usage-raw/x", "h", 1, api, api - rejected, rejected, duplicates, conflicts, LOADED_AT, LOADED_AT, "u")],
    )


def add_crm_snapshot(wh: DuckDBWarehouse, day: dt.date, company_ids: Iterable[str]) -> None:
    ids = list(company_ids)
    wh.bulk_load(
        "stg.crm_snapshots",
        [
            "snapshot_date",
            "source_blob",
            "content_hash",
            "row_count",
            "rejected_row_count",
            "duplicate_row_count",
            "ingested_at",
            "run_id",
        ],
        [(day, f"crm_{day}.csv", "h", len(ids), 0, 0, LOADED_AT, "crm-run")],
    )
    wh.bulk_load(
        "stg.crm_companies",
        [
            "snapshot_date",
            "company_id",
            "company_name",
            "attributes_hash",
            "source_blob",
            "source_row",
            "ingested_at",
            "run_id",
        ],
        [(day, c, f"name {c}", "hash", f"crm_{day}.csv", i + 2, LOADED_AT, "crm-run") for i, c in enumerate(ids)],
    )


def companies(n: int, prefix: str = "c") -> list[str]:
    return [f"{prefix}{i:04d}" for i in range(n)]


def check(wh: DuckDBWarehouse, name: str, day: dt.date = D, now: dt.datetime = NOW) -> CheckResult:
    (selected,) = checks_named(name)
    return evaluate(wh, selected, day, now, SETTINGS)


# ---- analytics_row_count ----------------------------------------------------------------------
def test_row_count_passes_when_the_date_has_rows(wh: DuckDBWarehouse) -> None:
    add_activity(wh, D, companies(3))
    result = check(wh, "analytics_row_count")
    assert (result.status, result.observed_value, result.threshold) == ("pass", 3.0, 0.0)


def test_row_count_fails_when_the_date_has_no_rows(wh: DuckDBWarehouse) -> None:
    add_activity(wh, D - dt.timedelta(days=1), companies(3))
    result = check(wh, "analytics_row_count")
    assert (result.status, result.observed_value) == ("fail", 0.0)
    assert result.message == "no analytics rows for the date"


# ---- analytics_row_drop -----------------------------------------------------------------------
def _history(wh: DuckDBWarehouse, counts_before: list[int]) -> None:
    """counts_before[0] is D-1, [1] is D-2, ..."""
    for back, count in enumerate(counts_before, start=1):
        add_activity(wh, D - dt.timedelta(days=back), companies(count))


def test_row_drop_passes_within_the_threshold_of_the_trailing_median(wh: DuckDBWarehouse) -> None:
    _history(wh, [100, 90, 110, 100, 95, 105, 100])  # median 100
    add_activity(wh, D, companies(91))  # 9 % down
    result = check(wh, "analytics_row_drop")
    assert result.status == "pass"
    assert result.reference_value == 100.0
    assert result.observed_value == pytest.approx(0.09)


def test_row_drop_fails_beyond_the_threshold_and_says_by_how_much(wh: DuckDBWarehouse) -> None:
    _history(wh, [100, 90, 110, 100, 95, 105, 100])
    add_activity(wh, D, companies(80))  # 20 % down
    result = check(wh, "analytics_row_drop")
    assert result.status == "fail"
    assert result.observed_value == pytest.approx(0.20)
    assert result.offending_rows == 20
    assert "80 rows versus a median of 100 over the previous 7 day(s): -20.0%" in result.message


def test_row_drop_median_of_an_even_number_of_days_is_the_mean_of_the_middle_two(wh: DuckDBWarehouse) -> None:
    _history(wh, [10, 40, 20, 30])  # sorted 10 20 30 40: median 25
    add_activity(wh, D, companies(20))
    result = check(wh, "analytics_row_drop")
    assert result.reference_value == 25.0
    assert (result.status, result.observed_value) == ("fail", pytest.approx(0.20))


def test_row_drop_ignores_days_older_than_seven(wh: DuckDBWarehouse) -> None:
    add_activity(wh, D - dt.timedelta(days=8), companies(500))
    _history(wh, [50])
    add_activity(wh, D, companies(50))
    assert check(wh, "analytics_row_drop").reference_value == 50.0


def test_row_drop_passes_with_a_message_when_there_is_no_history(wh: DuckDBWarehouse) -> None:
    add_activity(wh, D, companies(5))
    result = check(wh, "analytics_row_drop")
    assert (result.status, result.observed_value, result.note) == ("pass", None, "no_history")
    assert "nothing to compare with" in result.message


def test_row_drop_treats_growth_as_a_pass(wh: DuckDBWarehouse) -> None:
    _history(wh, [10, 10, 10])
    add_activity(wh, D, companies(30))
    result = check(wh, "analytics_row_drop")
    assert (result.status, result.observed_value) == ("pass", pytest.approx(-2.0))


# ---- usage_api_total --------------------------------------------------------------------------
def test_api_total_passes_when_every_api_record_is_staged_rejected_or_repeated(wh: DuckDBWarehouse) -> None:
    add_usage(wh, D, companies(7))
    add_usage_pull(wh, D, api=12, rejected=2, duplicates=2, conflicts=1)
    result = check(wh, "usage_api_total")
    assert (result.status, result.observed_value, result.offending_rows) == ("pass", 0.0, 0)


def test_api_total_fails_when_staged_rows_fall_short_of_the_api_count(wh: DuckDBWarehouse) -> None:
    add_usage(wh, D, companies(8))
    add_usage_pull(wh, D, api=10)
    result = check(wh, "usage_api_total")
    assert result.status == "fail"
    assert (result.offending_rows, result.reference_value) == (2, 10.0)
    assert result.observed_value == pytest.approx(0.2)
    assert "API returned 10 records; 2 not accounted for" in result.message


def test_api_total_tolerance_is_a_share_of_the_api_count(wh: DuckDBWarehouse) -> None:
    add_usage(wh, D, companies(99))
    add_usage_pull(wh, D, api=100)
    (selected,) = checks_named("usage_api_total")
    tolerant = Settings(quality_api_total_tolerance=0.02)
    assert evaluate(wh, selected, D, NOW, tolerant).status == "pass"
    assert evaluate(wh, selected, D, NOW, SETTINGS).status == "fail"


def test_api_total_passes_with_a_note_when_no_pull_was_recorded(wh: DuckDBWarehouse) -> None:
    result = check(wh, "usage_api_total")
    assert (result.status, result.note) == ("pass", "no_usage_pull")


# ---- duplicate keys ---------------------------------------------------------------------------
def test_staging_usage_duplicate_keys_pass_with_one_row_per_company(wh: DuckDBWarehouse) -> None:
    add_usage(wh, D, ["acme", "globex"])
    add_usage(wh, D + dt.timedelta(days=1), ["acme"])  # another date: not a duplicate
    assert check(wh, "stg_usage_duplicate_keys").status == "pass"


def test_staging_usage_duplicate_keys_fail_on_keys_azure_sql_would_treat_as_equal(wh: DuckDBWarehouse) -> None:
    add_usage(wh, D, ["acme", "acme ", "acme  ", "globex"])  # trailing spaces: one key on Azure SQL
    result = check(wh, "stg_usage_duplicate_keys")
    assert (result.status, result.observed_value, result.offending_rows) == ("fail", 1.0, 3)


def test_ids_differing_only_in_case_are_two_companies_not_duplicates(wh: DuckDBWarehouse) -> None:
    """Ids are binary-collated on Azure SQL too (BIN2): 'ACME' and 'acme' are distinct."""
    add_usage(wh, D, ["acme", "ACME", "Acme"])
    add_crm_snapshot(wh, D, ["acme", "ACME"])
    add_activity(wh, D, ["acme", "ACME"])
    for name in ("stg_usage_duplicate_keys", "stg_crm_duplicate_keys", "analytics_duplicate_keys"):
        assert check(wh, name).status == "pass", name


def test_staging_crm_duplicate_keys_pass_and_fail(wh: DuckDBWarehouse) -> None:
    add_crm_snapshot(wh, D, ["acme", "globex"])
    assert check(wh, "stg_crm_duplicate_keys").status == "pass"
    add_crm_snapshot(wh, D + dt.timedelta(days=1), ["acme", "globex", "globex "])
    result = check(wh, "stg_crm_duplicate_keys", D + dt.timedelta(days=1))
    assert (result.status, result.offending_rows) == ("fail", 2)


def test_staging_crm_exact_duplicate_key_fails_the_check_now_that_no_key_refuses_it(wh: DuckDBWarehouse) -> None:
    """Migration 0016: on DuckDB stg.crm_companies has no key (Azure SQL keeps a unique index), so
    an exact repeat of (snapshot_date, company_id) is stored; the check is what catches it."""
    add_crm_snapshot(wh, D, ["acme", "globex"])
    wh.bulk_load(  # the same key again: nothing refuses it on DuckDB
        "stg.crm_companies",
        ["snapshot_date", "company_id", "attributes_hash", "source_blob", "source_row", "ingested_at", "run_id"],
        [(D, "acme", "hash", f"crm_{D}.csv", 9, LOADED_AT, "crm-run")],
    )
    assert wh.run_sql(
        "SELECT COUNT(*) AS n FROM stg.crm_companies WHERE snapshot_date = @d AND company_id = 'acme'", {"d": D}
    ) == [{"n": 2}]
    result = check(wh, "stg_crm_duplicate_keys")
    assert (result.status, result.observed_value, result.offending_rows) == ("fail", 1.0, 2)
    assert check(wh, "stg_crm_duplicate_keys", D + dt.timedelta(days=1)).status == "pass"  # another date


def test_every_unique_key_duckdb_goes_without_names_a_check_that_runs_after_each_build() -> None:
    """translate.py skips a unique index on DuckDB only with the check that verifies its key: the
    named check must be one the builds run (CHECKS), else the grain would go unchecked there."""
    named = list(UNIQUE_KEYS_CHECKED.values())
    assert named
    assert [check.name for check in checks_named(*named)] == named


def test_analytics_duplicate_keys_pass_and_fail(wh: DuckDBWarehouse) -> None:
    add_activity(wh, D, ["acme", "globex"])
    assert check(wh, "analytics_duplicate_keys").status == "pass"
    add_activity(wh, D, ["acme "])
    result = check(wh, "analytics_duplicate_keys")
    assert (result.status, result.observed_value, result.offending_rows) == ("fail", 1.0, 2)


def test_exact_duplicate_rows_fail_the_check_if_the_primary_key_is_ever_missing(wh: DuckDBWarehouse) -> None:
    wh.run_sql("DROP TABLE stg.product_usage")
    wh.run_sql(
        "CREATE TABLE stg.product_usage (activity_date DATE, company_id NVARCHAR(64), active_users INT, "
        "events BIGINT, source_blob NVARCHAR(1024), ingested_at DATETIME2(6), run_id NVARCHAR(64))"
    )
    add_usage(wh, D, ["acme", "acme"])
    assert check(wh, "stg_usage_duplicate_keys").status == "fail"


# ---- unknown_company_usage --------------------------------------------------------------------
def test_unknown_companies_pass_below_the_share_and_count_them(wh: DuckDBWarehouse) -> None:
    add_crm_snapshot(wh, D - dt.timedelta(days=2), companies(99))  # the snapshot in force on D
    add_usage(wh, D, [*companies(99), "stranger"])
    result = check(wh, "unknown_company_usage")
    assert (result.status, result.offending_rows, result.reference_value) == ("pass", 1, 100.0)
    assert result.observed_value == pytest.approx(0.01)
    assert result.note == f"crm_snapshot={D - dt.timedelta(days=2)}"


def test_unknown_companies_warn_above_the_share(wh: DuckDBWarehouse) -> None:
    add_crm_snapshot(wh, D, companies(90))
    add_usage(wh, D, [*companies(90), *companies(10, prefix="new")])
    result = check(wh, "unknown_company_usage")
    assert (result.status, result.severity, result.offending_rows) == ("warn", "warn", 10)
    assert "10 of 100 usage rows (10.0%) are for companies unknown to CRM" in result.message


def test_unknown_companies_use_the_snapshot_in_force_not_a_later_one(wh: DuckDBWarehouse) -> None:
    add_crm_snapshot(wh, D - dt.timedelta(days=1), ["acme"])
    add_crm_snapshot(wh, D + dt.timedelta(days=1), ["acme", "globex"])  # later: not in force on D
    add_usage(wh, D, ["acme", "globex"])
    result = check(wh, "unknown_company_usage")
    assert (result.status, result.offending_rows) == ("warn", 1)


def test_unknown_companies_without_any_snapshot_count_every_usage_row(wh: DuckDBWarehouse) -> None:
    add_usage(wh, D, ["acme", "globex"])
    result = check(wh, "unknown_company_usage")
    assert (result.status, result.observed_value, result.note) == ("warn", 1.0, "no_crm_snapshot")


# ---- input_freshness --------------------------------------------------------------------------
def test_freshness_passes_when_both_inputs_are_staged(wh: DuckDBWarehouse) -> None:
    add_crm_snapshot(wh, D, ["acme"])
    add_usage_pull(wh, D, api=0)
    result = check(wh, "input_freshness", now=dt.datetime(2025, 3, 20))
    assert (result.status, result.offending_rows, result.note) == ("pass", 0, None)


def test_freshness_passes_while_an_input_is_missing_but_the_deadline_is_ahead(wh: DuckDBWarehouse) -> None:
    add_usage_pull(wh, D, api=0)
    result = check(wh, "input_freshness", now=dt.datetime(2025, 3, 12, 5, 59))  # 29 h 59 min after D ended
    assert (result.status, result.note) == ("pass", "missing=crm")
    assert result.observed_value == pytest.approx(29 + 59 / 60)
    assert result.message.startswith("waiting for crm input")


def test_freshness_fails_once_the_deadline_passed_naming_the_missing_input(wh: DuckDBWarehouse) -> None:
    add_usage_pull(wh, D, api=0)
    result = check(wh, "input_freshness", now=dt.datetime(2025, 3, 12, 6, 0))  # exactly 30 h
    assert (result.status, result.offending_rows, result.threshold) == ("fail", 1, 30.0)
    assert result.message == "crm input missing (30.0 h after the day ended, deadline 30 h)"


def test_freshness_fails_with_both_inputs_missing(wh: DuckDBWarehouse) -> None:
    add_crm_snapshot(wh, D - dt.timedelta(days=1), ["acme"])  # yesterday's CRM does not count for D
    result = check(wh, "input_freshness", now=dt.datetime(2025, 3, 14))
    assert (result.status, result.offending_rows, result.note) == ("fail", 2, "missing=crm,usage")


# ---- activity sanity --------------------------------------------------------------------------
def test_negative_counts_pass_on_possible_values(wh: DuckDBWarehouse) -> None:
    add_activity(wh, D, ["acme"], active_users=0, events=0, active_days_7d=7, days_since_last_activity=None)
    add_activity(wh, D, ["busy"], active_days_7d=7, wide=(90, 400, 28, 0))
    add_activity(wh, D, ["before_0007"], wide=None)  # 28-day columns not filled yet
    assert check(wh, "activity_negative_counts").status == "pass"


@pytest.mark.parametrize(
    "bad",
    [
        {"active_users": -1},
        {"events": -5},
        {"active_users_7d": -1},
        {"events_7d": -1},
        {"active_days_7d": 8},
        {"days_since_last_activity": -2},
        {"wide": (-1, 40, 3, 0)},
        {"wide": (9, -1, 3, 0)},
        {"wide": (9, 40, 29, 0)},
        {"wide": (9, 40, 2, 0)},  # fewer active days in 28 days than in the 7 within them
        {"wide": (9, 40, 3, -1)},
    ],
    ids=lambda bad: f"{next(iter(bad))}={next(iter(bad.values()))}",
)
def test_negative_counts_fail_on_impossible_values(wh: DuckDBWarehouse, bad: dict[str, int]) -> None:
    add_activity(wh, D, ["fine"])
    add_activity(wh, D, ["broken"], **bad)
    result = check(wh, "activity_negative_counts")
    assert (result.status, result.offending_rows) == ("fail", 1)


def test_events_without_users_pass_when_events_come_with_users(wh: DuckDBWarehouse) -> None:
    add_activity(wh, D, ["acme"], active_users=1, events=10)
    add_activity(wh, D, ["idle"], active_users=0, events=0)
    assert check(wh, "activity_events_without_users").status == "pass"


def test_events_without_users_only_warn(wh: DuckDBWarehouse) -> None:
    add_activity(wh, D, ["acme"], active_users=1, events=10)
    add_activity(wh, D, ["bot"], active_users=0, events=10)
    result = check(wh, "activity_events_without_users")
    assert (result.status, result.offending_rows, result.reference_value) == ("warn", 1, 2.0)
    assert result.message == "1 of 2 rows have events but no active users"
