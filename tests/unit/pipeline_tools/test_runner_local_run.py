"""The local run's plan (dates, settings it owns), its exit code and its summary."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click
import pytest

from pipeline_tools.local_run import (
    OWNED_BY_THE_RUN,
    RunPlan,
    Stage,
    _exit_code,
    claim_owned_settings,
    plan_run,
    run_values,
    summarize,
)
from pipeline_tools.runner import DrainResult, Invocation
from shared.adapters.warehouse.duckdb_engine import DuckDBWarehouse

TODAY = dt.date(2025, 6, 15)
YESTERDAY = dt.date(2025, 6, 14)


def test_default_plan_is_thirty_days_ending_yesterday_with_a_lookback_reaching_the_first_day() -> None:
    plan = plan_run(today=TODAY)
    assert (plan.start, plan.end, plan.days) == (dt.date(2025, 5, 16), YESTERDAY, 30)
    assert plan.lookback_days == 29
    assert plan.companies == 200


def test_days_and_start_give_a_range_from_start() -> None:
    plan = plan_run(today=TODAY, days=5, start=dt.date(2025, 6, 1))
    assert (plan.start, plan.end) == (dt.date(2025, 6, 1), dt.date(2025, 6, 5))
    assert plan.lookback_days == 13


def test_an_end_after_yesterday_is_refused_because_the_api_has_no_usage_yet() -> None:
    with pytest.raises(click.BadParameter, match="yesterday"):
        plan_run(today=TODAY, end=TODAY)


def test_a_start_beyond_one_ticks_reach_is_refused_with_the_way_out() -> None:
    plan_run(today=TODAY, start=TODAY - dt.timedelta(days=61))  # lookback 60: the Settings bound
    with pytest.raises(click.BadParameter, match="backfill"):
        plan_run(today=TODAY, start=TODAY - dt.timedelta(days=62))


def test_the_late_correction_never_falls_on_the_bad_files_day() -> None:
    for days in range(1, 12):
        plan = plan_run(today=TODAY, days=days)
        assert plan.start <= plan.correction_date <= plan.end
        if days > 1:
            assert plan.correction_date != plan.bad_file_date


def test_run_values_point_everything_at_this_runs_processes_and_files(tmp_path: Path) -> None:
    plan = plan_run(today=TODAY, workdir=tmp_path)
    values = run_values(
        {"CRM_CONTAINER": "crm-snapshots", "PIPELINE_STORAGE": "UseDevelopmentStorage=true"},
        storage="conn",
        api_url="http://127.0.0.1:5555",
        api_key="k",
        plan=plan,
    )
    assert values["PIPELINE_STORAGE"] == values["AzureWebJobsStorage"] == "conn"
    assert values["USAGE_API_BASE_URL"] == "http://127.0.0.1:5555"
    assert values["DUCKDB_PATH"] == str(tmp_path / "warehouse.duckdb")
    assert values["USAGE_LOOKBACK_DAYS"] == "29"
    assert values["CRM_CONTAINER"] == "crm-snapshots"
    assert set(OWNED_BY_THE_RUN) <= set(values)


def test_the_run_replaces_shell_values_only_for_the_settings_it_owns() -> None:
    values = {name: f"run-{name}" for name in OWNED_BY_THE_RUN}
    environ = {"PIPELINE_STORAGE": "a-real-account", "CRM_GRACE_HOURS": "0"}
    replaced = claim_owned_settings(values, environ)
    assert replaced == ["PIPELINE_STORAGE"]
    assert environ["PIPELINE_STORAGE"] == "run-PIPELINE_STORAGE"
    assert environ["CRM_GRACE_HOURS"] == "0"  # not the run's: the shell still wins


def _stage(*invocations: Invocation, idle: bool = True) -> Stage:
    return Stage("stage", DrainResult(list(invocations), idle, 0.1))


def _failed(error: BaseException) -> Invocation:
    return Invocation("fn", {}, False, 1, error)


def test_a_real_failure_or_unfinished_work_fails_the_run() -> None:
    assert _exit_code([_stage(_failed(RuntimeError("boom")))], lambda _: None) == 1
    assert _exit_code([_stage(idle=False)], lambda _: None) == 1
    assert _exit_code([_stage(Invocation("fn", {}, True, 1))], lambda _: None) == 0


def test_summary_of_an_empty_warehouse_says_nothing_was_built(tmp_path: Path) -> None:
    warehouse = DuckDBWarehouse(":memory:")
    warehouse.apply_schema()
    plan = RunPlan(10, dt.date(2025, 6, 1), dt.date(2025, 6, 3), TODAY, 7, tmp_path)

    text = "\n".join(summarize(warehouse, plan, []))

    assert "none of 3 (2025-06-01..2025-06-03)" in text
    assert "Quarantined files:\n  none" in text
    assert str(tmp_path / "warehouse.duckdb") in text


def test_summary_counts_built_dates_rows_and_names_the_missing_ones(tmp_path: Path) -> None:
    warehouse = DuckDBWarehouse(":memory:")
    warehouse.apply_schema()
    for day, company in [(1, "C000001"), (1, "C000002"), (3, "C000001")]:
        warehouse.run_sql(
            "INSERT INTO analytics.company_daily_activity (activity_date, company_id, active_users, events, "
            "active_users_7d, events_7d, active_days_7d, is_churn_risk, data_quality_flags, record_loaded_at, run_id) "
            "VALUES (@d, @c, 0, 0, 0, 0, 0, 1, '', @t, 'r')",
            {"d": dt.date(2025, 6, day), "c": company, "t": dt.datetime(2025, 6, 4)},
        )
    plan = RunPlan(10, dt.date(2025, 6, 1), dt.date(2025, 6, 3), TODAY, 7, tmp_path)

    text = "\n".join(summarize(warehouse, plan, []))

    assert "2 of 3 dates, 3 rows (2025-06-01..2025-06-03)" in text
    assert "not built: 2025-06-02" in text
    assert "1 companies at risk on the latest date" in text
