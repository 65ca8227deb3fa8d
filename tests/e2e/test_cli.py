"""The operator CLI end to end: Azurite + the mock usage API + DuckDB, each command through
click (as an operator types it), the triggers through the local runner."""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING, Any

import pytest
from click.testing import CliRunner, Result

from pipeline_tools.cli import CliContext, cli
from shared.errors import UpstreamUnavailable
from shared.services import usage_ingest

if TYPE_CHECKING:  # the fixtures come from tests/e2e/conftest.py; only their types are named here
    from tests.e2e.conftest import Pipeline, PipelineFactory

pytestmark = pytest.mark.e2e

# The tables a backfill, a rollback or a replay must leave exactly as an undisturbed run does.
RESULT_TABLES = ("analytics.company_daily_activity", "stg.product_usage", "stg.crm_companies", "dim.companies")


def run_cli(pipeline: Pipeline, *args: str) -> Result:
    result = CliRunner().invoke(cli, list(args), obj=CliContext(_resources=pipeline.resources))
    assert result.exit_code == 0, f"exit {result.exit_code}: {result.output}"
    return result


def snapshot(pipeline: Pipeline) -> dict[str, list[tuple[Any, ...]]]:
    return {table: pipeline.table(table) for table in RESULT_TABLES}


def api_dates_requested(pipeline: Pipeline) -> list[str]:
    return [r.query.get("date", "") for r in pipeline.api.requests if r.path.startswith("/v1/usage/daily")]


def backfill_args(pipeline: Pipeline, *extra: str) -> list[str]:
    return ["backfill", "--start", str(pipeline.dates[0]), "--end", str(pipeline.dates[-1]), *extra]


def crm_staged_then_backfilled(make_pipeline: PipelineFactory) -> Pipeline:
    pipeline = make_pipeline(companies=20, days=8, include_bad_file=False)
    pipeline.upload_crm()
    pipeline.process()  # CRM through the blob trigger; usage comes from the backfill
    return pipeline


# ---- backfill -----------------------------------------------------------------------------------
def test_backfill_dry_run_calls_no_api_and_changes_nothing(make_pipeline: PipelineFactory) -> None:
    pipeline = crm_staged_then_backfilled(make_pipeline)
    before = snapshot(pipeline)

    result = run_cli(pipeline, *backfill_args(pipeline, "--dry-run"))

    assert f"would pull usage for 8 dates: {pipeline.dates[0]}..{pipeline.dates[-1]}" in result.stdout
    assert "would build 8 dates in 1 chunks" in result.stdout
    assert api_dates_requested(pipeline) == []
    assert snapshot(pipeline) == before
    assert pipeline.resources.warehouse.run_sql("SELECT COUNT(*) AS n FROM ops.date_builds") == [{"n": 0}]


def test_backfill_interrupted_half_way_resumes_skipping_done_dates_and_ends_like_an_uninterrupted_one(
    make_pipeline: PipelineFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = crm_staged_then_backfilled(make_pipeline)
    run_cli(reference, *backfill_args(reference, "--chunk-days", "3"))
    expected = snapshot(reference)
    assert sorted(reference.rows_per_date()) == reference.dates

    pipeline = crm_staged_then_backfilled(make_pipeline)
    real_ingest = usage_ingest.ingest_date
    half_way = pipeline.dates[4]
    ingested: list[dt.date] = []

    def ingest_until_the_api_fails(day: dt.date, *args: Any, **kwargs: Any) -> Any:
        if day == half_way:
            raise UpstreamUnavailable("usage API unavailable (injected)")
        ingested.append(day)
        return real_ingest(day, *args, **kwargs)

    monkeypatch.setattr(usage_ingest, "ingest_date", ingest_until_the_api_fails)
    interrupted = CliRunner().invoke(
        cli, backfill_args(pipeline, "--chunk-days", "3"), obj=CliContext(_resources=pipeline.resources)
    )
    assert interrupted.exit_code == 1
    assert (
        interrupted.stderr.strip()
        .splitlines()[-1]
        .startswith(f"error: OperationStopped: backfill stopped at the pull of {half_way}")
    )
    assert ingested == pipeline.dates[:4]
    assert pipeline.rows_per_date() == {}

    monkeypatch.setattr(usage_ingest, "ingest_date", real_ingest)
    requests_before = len(api_dates_requested(pipeline))
    resumed = run_cli(pipeline, *backfill_args(pipeline, "--chunk-days", "3"))

    resumed_dates = set(api_dates_requested(pipeline)[requests_before:])
    assert resumed_dates == {str(d) for d in pipeline.dates[4:]}, "done dates are not pulled again"
    assert "pulled 4 dates (4 already pulled)" in resumed.stdout
    assert snapshot(pipeline) == expected

    again = run_cli(pipeline, *backfill_args(pipeline))
    assert "pulled 0 dates (8 already pulled), built 0 dates in 0 chunks (8 already up to date)" in again.stdout
    assert snapshot(pipeline) == expected


def test_build_messages_the_gate_queued_during_a_backfill_change_nothing(make_pipeline: PipelineFactory) -> None:
    pipeline = crm_staged_then_backfilled(make_pipeline)
    run_cli(pipeline, *backfill_args(pipeline))
    after_backfill = snapshot(pipeline)

    pipeline.process()  # the gate queued one build per date as usage arrived; the builder skips them

    assert snapshot(pipeline) == after_backfill


# ---- rollback and rebuild --------------------------------------------------------------------------
def test_rollback_then_rebuild_through_the_queue_restores_identical_rows(make_pipeline: PipelineFactory) -> None:
    pipeline = make_pipeline(companies=20, days=8, include_bad_file=False)
    pipeline.run_everything()
    expected = snapshot(pipeline)
    day = pipeline.dates[3]
    rows_of_day = pipeline.rows_per_date()[day]

    rolled_back = run_cli(pipeline, "rollback", "--date", str(day), "--yes")

    assert f"removed {rows_of_day} analytics rows and the build record" in rolled_back.stdout
    assert day not in pipeline.rows_per_date()
    status = json.loads(run_cli(pipeline, "status", "--date", str(day), "--json").stdout)[0]
    assert status["build"]["built"] is False
    assert status["build"]["current_rows"] == 0

    run_cli(pipeline, "rebuild", "--date", str(day))
    pipeline.process()

    assert snapshot(pipeline) == expected


def test_rollback_then_rebuild_now_restores_identical_rows(make_pipeline: PipelineFactory) -> None:
    pipeline = make_pipeline(companies=15, days=6, include_bad_file=False)
    pipeline.run_everything()
    expected = snapshot(pipeline)
    day = pipeline.dates[-1]

    run_cli(pipeline, "rollback", "--date", str(day), "--yes")
    rebuilt = run_cli(pipeline, "rebuild", "--date", str(day), "--now")

    assert f"rebuilt {day} in 1 chunk(s): 1 dates in 1 ranges" in rebuilt.stdout
    assert snapshot(pipeline) == expected


# ---- replay -----------------------------------------------------------------------------------
def test_replay_restages_usage_and_crm_from_what_landed_without_calling_the_api(
    make_pipeline: PipelineFactory,
) -> None:
    pipeline = make_pipeline(companies=15, days=6, include_bad_file=False)
    pipeline.run_everything()
    expected = snapshot(pipeline)
    day = pipeline.dates[2]
    warehouse = pipeline.resources.warehouse
    # Staging of the day lost (e.g. restored from an older backup): rows and their manifests.
    for table in ("stg.product_usage", "stg.usage_pulls"):
        warehouse.run_sql(f"DELETE FROM {table} WHERE activity_date = @d", {"d": day})
    for table in ("stg.crm_companies", "stg.crm_snapshots"):
        warehouse.run_sql(f"DELETE FROM {table} WHERE snapshot_date = @d", {"d": day})
    api_calls_before = len(pipeline.api.requests)

    result = run_cli(pipeline, "replay", "--date", str(day))

    assert f"usage {day}: restored: 0 staged rows vs " in result.stdout
    assert f"crm {day}: restored: 0 staged rows vs " in result.stdout and f"in crm_{day}.csv: " in result.stdout
    assert len(pipeline.api.requests) == api_calls_before
    assert snapshot(pipeline) == expected


# ---- status -----------------------------------------------------------------------------------
def test_status_json_reports_built_dates_and_the_quarantined_file(make_pipeline: PipelineFactory) -> None:
    pipeline = make_pipeline(companies=20, days=6)
    pipeline.run_everything()

    result = run_cli(pipeline, "status", "--start", str(pipeline.dates[0]), "--end", str(pipeline.dates[-1]), "--json")

    report = {entry["date"]: entry for entry in json.loads(result.stdout)}
    assert sorted(report) == [str(d) for d in pipeline.dates]
    rows = pipeline.rows_per_date()
    for day in pipeline.good_dates:
        entry = report[str(day)]
        assert entry["inputs"]["crm"]["present"] and entry["inputs"]["usage"]["present"]
        assert entry["build"]["built"] and entry["build"]["up_to_date"]
        assert entry["build"]["rows"] == entry["build"]["current_rows"] == rows[day]
        assert entry["readiness"]["usage"]["version"] == entry["inputs"]["usage"]["version"]
        assert entry["checks"]["run_id"] is not None
    bad = report[str(pipeline.sample.bad_date)]
    assert bad["inputs"]["crm"]["present"] is False
    assert [q["source_blob"] for q in bad["quarantined_files"]] == [f"crm_{pipeline.sample.bad_date}.csv"]
