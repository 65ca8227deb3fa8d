"""Operator CLI through click's CliRunner: option parsing, exit codes, the one error handler,
--yes, --dry-run, status --json. A DuckDB warehouse with hand-inserted rows; fakes for storage."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from click.testing import CliRunner, Result

from pipeline_tools.cli import CliContext, cli
from shared.adapters.warehouse.duckdb_engine import DuckDBWarehouse
from shared.errors import AuthenticationFailed
from shared.rules.build_plan import InputVersions, parse_build_request
from shared.services.rollback import roll_back
from shared.settings import Settings
from shared.wiring import Resources
from tests.fakes import InMemoryStateTable

D1 = dt.date(2025, 3, 1)
D2 = dt.date(2025, 3, 2)
D3 = dt.date(2025, 3, 3)
AT = dt.datetime(2025, 3, 4, 6, 0, 0)


# ---- fakes -------------------------------------------------------------------------------------
class FakeGate:
    """The two reads the reports make of the readiness gate."""

    def __init__(self, versions: Mapping[dt.date, InputVersions] | None = None) -> None:
        self.versions = dict(versions or {})

    def input_versions(self, dates: Sequence[dt.date]) -> dict[dt.date, InputVersions]:
        return {d: v for d, v in self.versions.items() if d in set(dates)}

    def state(self, activity_date: dt.date) -> Any:
        return None


class FakeQueue:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def ensure_exists(self) -> None:
        pass

    def send(self, payload: dict[str, Any], visibility_timeout_s: int | None = None) -> str:
        self.sent.append(payload)
        return f"msg-{len(self.sent)}"


class ExplodingApi:
    """Any attempt to reach the usage API fails the test."""

    def for_run(self) -> Any:
        raise AssertionError("the usage API must not be called")


@pytest.fixture
def warehouse() -> DuckDBWarehouse:
    engine = DuckDBWarehouse(":memory:")
    engine.apply_schema()
    return engine


@pytest.fixture
def gate() -> FakeGate:
    return FakeGate()


@pytest.fixture
def queue() -> FakeQueue:
    return FakeQueue()


@pytest.fixture
def resources(warehouse: DuckDBWarehouse, gate: FakeGate, queue: FakeQueue) -> Resources:
    return Resources(
        Settings(),
        warehouse=warehouse,
        readiness=gate,
        build_queue=queue,
        state_table=InMemoryStateTable(),
        usage_api=ExplodingApi(),
    )


def invoke(resources: Resources, *args: str) -> Result:
    return CliRunner().invoke(cli, list(args), obj=CliContext(_resources=resources))


# ---- rows written by hand ---------------------------------------------------------------------
def insert_crm_snapshot(wh: DuckDBWarehouse, day: dt.date, content_hash: str, rows: int = 3) -> None:
    wh.run_sql(
        "INSERT INTO stg.crm_snapshots VALUES (@d, @blob, @h, @n, 1, 0, @at, 'run-crm')",
        {"d": day, "blob": f"crm_{day}.csv", "h": content_hash, "n": rows, "at": AT},
    )


def insert_usage_pull(wh: DuckDBWarehouse, day: dt.date, content_hash: str, rows: int = 2) -> None:
    wh.run_sql(
        "INSERT INTO stg.usage_pulls VALUES (@d, @blob, @h, 1, @n, @n, 0, 0, 0, @at, @at, 'run-usage')",
        {"d": day, "blob": f"usage-raw/date={day}/usage.ndjson", "h": content_hash, "n": rows, "at": AT},
    )


def insert_analytics_rows(wh: DuckDBWarehouse, day: dt.date, companies: Sequence[str], run_id: str) -> None:
    for company in companies:
        wh.run_sql(
            "INSERT INTO analytics.company_daily_activity (activity_date, company_id, active_users, events, "
            "active_users_7d, events_7d, active_days_7d, is_churn_risk, data_quality_flags, record_loaded_at, run_id) "
            "VALUES (@d, @c, 1, 2, 1, 2, 1, 0, '', @at, @run)",
            {"d": day, "c": company, "at": AT, "run": run_id},
        )


def insert_build(wh: DuckDBWarehouse, day: dt.date, crm: str | None, usage: str | None, rows: int, run_id: str) -> None:
    wh.run_sql(
        "INSERT INTO ops.date_builds (activity_date, crm_version, usage_version, crm_snapshot_date, row_count, "
        "built_at, run_id) VALUES (@d, @crm, @usage, @d, @n, @at, @run)",
        {"d": day, "crm": crm, "usage": usage, "n": rows, "at": AT, "run": run_id},
    )
    wh.run_sql(
        "INSERT INTO ops.pipeline_runs (run_id, step, run_date, status, started_at, finished_at, duration_ms, "
        "rows_out) VALUES (@run, 'build', @d, 'succeeded', @at, @at, 1234, @n)",
        {"run": run_id, "d": day, "at": AT, "n": rows},
    )


def insert_check(wh: DuckDBWarehouse, day: dt.date, name: str, status: str, severity: str = "fail") -> None:
    wh.run_sql(
        "INSERT INTO ops.data_quality_results (run_id, check_date, check_name, severity, status, observed_value, "
        "threshold, message, checked_at) VALUES ('run-b1', @d, @name, @sev, @status, 5, 0, @msg, @at)",
        {"d": day, "name": name, "sev": severity, "status": status, "msg": f"{name} {status}", "at": AT},
    )


def insert_quarantined(wh: DuckDBWarehouse, day: dt.date) -> None:
    wh.run_sql(
        "INSERT INTO ops.quarantined_files VALUES ('crm_bad.csv', 'h-bad', 'rejected', @d, 'q/crm_bad.csv', "
        "'q/crm_bad.csv.report.json', 'missing column country', 0, @at, 'run-q')",
        {"d": day, "at": AT},
    )


def count(wh: DuckDBWarehouse, table: str) -> int:
    return int(wh.run_sql(f"SELECT COUNT(*) AS n FROM {table}")[0]["n"])


# ---- help and usage errors (exit 2) --------------------------------------------------------------
@pytest.mark.parametrize(
    "command",
    [
        [],
        ["schema"],
        ["schema", "apply"],
        ["schema", "bootstrap"],
        ["status"],
        ["backfill"],
        ["rebuild"],
        ["rollback"],
        ["replay"],
        ["events"],
        ["events", "refresh"],
        ["checks"],
        ["checks", "run"],
        ["runs"],
        ["alerts"],
    ],
)
def test_every_command_has_help(command: list[str], resources: Resources) -> None:
    result = invoke(resources, *command, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["status"],  # no date at all
        ["status", "--date", "2025-03-01", "--start", "2025-03-01", "--end", "2025-03-02"],
        ["status", "--start", "2025-03-01"],  # --end missing
        ["status", "--start", "2025-03-05", "--end", "2025-03-01"],  # reversed range
        ["status", "--date", "2025-02-30"],  # not a real date
        ["backfill", "--start", "2025-03-01"],
        ["rebuild", "--date", "yesterday"],
        ["replay", "--date", "2025-03-01", "--no-usage", "--no-crm"],
        ["nosuchcommand"],
    ],
)
def test_bad_usage_exits_2_without_touching_anything(args: list[str], resources: Resources) -> None:
    result = invoke(resources, *args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


def test_rollback_without_yes_refuses_with_exit_2_and_deletes_nothing(
    resources: Resources, warehouse: DuckDBWarehouse
) -> None:
    insert_analytics_rows(warehouse, D1, ["C000001", "C000002"], "run-b1")
    insert_build(warehouse, D1, "crm-1", "usage-1", 2, "run-b1")

    result = invoke(resources, "rollback", "--date", "2025-03-01")

    assert result.exit_code == 2
    assert "--yes" in result.output
    assert count(warehouse, "analytics.company_daily_activity") == 2
    assert count(warehouse, "ops.date_builds") == 1


# ---- the one error handler (exit 1) --------------------------------------------------------------
def failing_status(*_: Any, **__: Any) -> Any:
    raise AuthenticationFailed("usage API answered 401 for key=sekrit-value-123")


def test_pipeline_error_is_one_line_on_stderr_and_exit_1(resources: Resources, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pipeline_tools.cli.status_of", failing_status)

    result = invoke(resources, "status", "--date", "2025-03-01")

    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert lines == ["error: AuthenticationFailed: usage API answered 401 for key=***"]
    assert "sekrit-value-123" not in result.output


def test_verbose_adds_the_traceback(resources: Resources, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pipeline_tools.cli.status_of", failing_status)

    result = invoke(resources, "--verbose", "status", "--date", "2025-03-01")

    assert result.exit_code == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: AuthenticationFailed")
    assert "sekrit-value-123" not in result.stderr


def test_unexpected_error_is_also_one_line_with_a_hint(resources: Resources, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: Any, **__: Any) -> Any:
        raise KeyError("activity_date")

    monkeypatch.setattr("pipeline_tools.cli.status_of", broken)

    result = invoke(resources, "status", "--date", "2025-03-01")

    assert result.exit_code == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert "unexpected error: KeyError" in result.stderr
    assert "--verbose" in result.stderr


def test_a_settings_file_that_does_not_exist_is_a_usage_error_and_creates_nothing(tmp_path: Any) -> None:
    missing = tmp_path / "typo.settings.json"

    result = CliRunner().invoke(cli, ["--settings", str(missing), "schema", "apply"])

    assert result.exit_code == 2
    assert f"{missing} does not exist" in result.output
    assert list(tmp_path.iterdir()) == []


def test_configuration_error_from_the_settings_file_exits_1(tmp_path: Any) -> None:
    settings_file = tmp_path / "local.settings.json"
    settings_file.write_text(json.dumps({"Values": {"CRM_REJECT_THRESHOLD": "2"}}))

    result = CliRunner().invoke(cli, ["--settings", str(settings_file), "status", "--date", "2025-03-01"])

    assert result.exit_code == 1
    assert result.stderr.strip().startswith("error: ConfigurationError: setting CRM_REJECT_THRESHOLD")


# ---- schema apply ------------------------------------------------------------------------------
def test_schema_apply_lists_migrations_then_reports_up_to_date(tmp_path: Any) -> None:
    settings_file = tmp_path / "local.settings.json"
    settings_file.write_text(json.dumps({"Values": {"DUCKDB_PATH": str(tmp_path / "w.duckdb")}}))
    args = ["--settings", str(settings_file), "schema", "apply"]

    planned = json.loads(CliRunner().invoke(cli, [*args, "--dry-run", "--json"]).stdout)
    assert planned["dry_run"] is True and "schema/0001_schemas" in planned["would_apply"]
    assert not (tmp_path / "w.duckdb").exists() or DuckDBWarehouse(tmp_path / "w.duckdb").pending_migrations()

    first = CliRunner().invoke(cli, args)
    second = CliRunner().invoke(cli, args)

    assert first.exit_code == 0, first.output
    assert [line.removeprefix("applied ") for line in first.stdout.splitlines()] == planned["would_apply"]
    assert "applied schema/0001_schemas" in first.stdout
    assert second.exit_code == 0
    assert second.stdout.strip() == "schema is up to date (no migration applied)"


# ---- status ------------------------------------------------------------------------------------
def test_status_json_reports_inputs_build_checks_and_quarantine_per_date(
    resources: Resources, warehouse: DuckDBWarehouse, gate: FakeGate
) -> None:
    insert_crm_snapshot(warehouse, D1, "crm-1", rows=3)
    insert_usage_pull(warehouse, D1, "usage-1", rows=2)
    insert_usage_pull(warehouse, D2, "usage-2", rows=4)
    insert_analytics_rows(warehouse, D1, ["C000001", "C000002", "C000003"], "run-b1")
    insert_build(warehouse, D1, "crm-1", "usage-1", 3, "run-b1")
    insert_check(warehouse, D1, "analytics_row_drop", "fail")
    insert_check(warehouse, D1, "unknown_company_usage", "warn", severity="warn")
    insert_check(warehouse, D1, "analytics_row_count", "pass")
    insert_quarantined(warehouse, D2)
    gate.versions = {D1: InputVersions("crm-1", "usage-1"), D2: InputVersions(None, "usage-2")}

    result = invoke(resources, "status", "--start", "2025-03-01", "--end", "2025-03-03", "--json")

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [entry["date"] for entry in report] == ["2025-03-01", "2025-03-02", "2025-03-03"]
    assert set(report[0]) == {
        "date",
        "inputs",
        "crm_snapshot_in_force",
        "readiness",
        "build",
        "checks",
        "quarantined_files",
        "recovery",
    }
    assert [entry["recovery"] for entry in report] == [[], [], []]
    first, second, third = report
    assert first["inputs"]["crm"] == {
        "present": True,
        "version": "crm-1",
        "rows": 3,
        "at": "2025-03-04T06:00:00",
        "source": "crm_2025-03-01.csv",
        "details": {"rejected_rows": 1, "duplicate_rows": 0, "run_id": "run-crm"},
    }
    assert first["inputs"]["usage"]["present"] is True
    assert first["inputs"]["usage"]["rows"] == 2
    assert first["build"]["built"] is True
    assert first["build"]["run_id"] == "run-b1"
    assert first["build"]["rows"] == 3
    assert first["build"]["current_rows"] == 3
    assert first["build"]["duration_ms"] == 1234
    assert first["build"]["up_to_date"] is True
    assert [c["check"] for c in first["checks"]["failed"]] == ["analytics_row_drop"]
    assert [c["check"] for c in first["checks"]["warned"]] == ["unknown_company_usage"]
    assert first["checks"]["passed"] == 1
    # D2: usage only, the D1 snapshot in force, not built, a quarantined file.
    assert second["inputs"]["crm"]["present"] is False
    assert second["crm_snapshot_in_force"] == "2025-03-01"
    assert second["build"]["built"] is False
    assert second["quarantined_files"][0]["source_blob"] == "crm_bad.csv"
    assert second["quarantined_files"][0]["reason"] == "missing column country"
    # D3: nothing at all.
    assert third["inputs"]["usage"]["present"] is False
    assert third["checks"]["run_id"] is None


def test_status_says_a_build_is_stale_when_the_gate_holds_newer_usage(
    resources: Resources, warehouse: DuckDBWarehouse, gate: FakeGate
) -> None:
    insert_usage_pull(warehouse, D1, "usage-2")
    insert_build(warehouse, D1, None, "usage-1", 3, "run-b1")
    gate.versions = {D1: InputVersions(None, "usage-2")}

    result = invoke(resources, "status", "--date", "2025-03-01", "--json")

    assert json.loads(result.stdout)[0]["build"]["up_to_date"] is False


def test_a_build_whose_checks_never_ran_is_not_up_to_date(
    resources: Resources, warehouse: DuckDBWarehouse, gate: FakeGate
) -> None:
    insert_usage_pull(warehouse, D1, "usage-1")
    insert_build(warehouse, D1, None, "usage-1", 3, "run-b1")
    gate.versions = {D1: InputVersions(None, "usage-1")}

    unchecked = json.loads(invoke(resources, "status", "--date", "2025-03-01", "--json").stdout)[0]["build"]
    insert_check(warehouse, D1, "input_freshness", "pass")  # a partial run (the timer's) does not count
    still = json.loads(invoke(resources, "status", "--date", "2025-03-01", "--json").stdout)[0]["build"]
    insert_check(warehouse, D1, "analytics_row_count", "pass")
    checked = json.loads(invoke(resources, "status", "--date", "2025-03-01", "--json").stdout)[0]["build"]

    assert (unchecked["inputs_current"], unchecked["up_to_date"], unchecked["checked_at"]) == (True, False, None)
    assert still["up_to_date"] is False
    assert (checked["up_to_date"], checked["checked_at"]) == (True, "2025-03-04T06:00:00")


def test_status_table_renders_without_json(resources: Resources, warehouse: DuckDBWarehouse) -> None:
    insert_usage_pull(warehouse, D1, "usage-1")

    result = invoke(resources, "status", "--date", "2025-03-01")

    assert result.exit_code == 0, result.output
    assert "2025-03-01" in result.stdout
    assert "not built" in result.stdout


# ---- rollback ----------------------------------------------------------------------------------
def test_rollback_deletes_only_that_dates_rows_and_forgets_its_build(
    resources: Resources, warehouse: DuckDBWarehouse
) -> None:
    insert_analytics_rows(warehouse, D1, ["C000001", "C000002"], "run-b1")
    insert_analytics_rows(warehouse, D2, ["C000001"], "run-b1")
    insert_build(warehouse, D1, "crm-1", "usage-1", 2, "run-b1")
    insert_build(warehouse, D2, "crm-1", "usage-2", 1, "run-b1")

    result = invoke(resources, "rollback", "--date", "2025-03-01", "--yes")

    assert result.exit_code == 0, result.output
    assert "removed 2 analytics rows and the build record" in result.stdout
    remaining = warehouse.run_sql("SELECT activity_date FROM analytics.company_daily_activity")
    assert [r["activity_date"] for r in remaining] == [D2]
    assert [r["activity_date"] for r in warehouse.run_sql("SELECT activity_date FROM ops.date_builds")] == [D2]
    runs = warehouse.run_sql("SELECT status, rows_in FROM ops.pipeline_runs WHERE step = 'rollback'")
    assert runs == [{"status": "succeeded", "rows_in": 2}]


def test_rollback_of_a_failing_delete_leaves_the_date_whole(warehouse: DuckDBWarehouse) -> None:
    insert_analytics_rows(warehouse, D1, ["C000001"], "run-b1")
    insert_build(warehouse, D1, "crm-1", "usage-1", 1, "run-b1")
    # ops.date_builds is deleted after the analytics rows: make that second statement fail.
    warehouse.run_sql("ALTER TABLE ops.date_builds RENAME TO date_builds_gone")

    with pytest.raises(Exception, match="date_builds"):
        roll_back(warehouse, D1)

    assert count(warehouse, "analytics.company_daily_activity") == 1


# ---- rebuild -----------------------------------------------------------------------------------
def test_rebuild_queues_one_forced_message_the_builder_accepts(resources: Resources, queue: FakeQueue) -> None:
    result = invoke(resources, "rebuild", "--start", "2025-03-01", "--end", "2025-03-03")

    assert result.exit_code == 0, result.output
    assert len(queue.sent) == 1
    request = parse_build_request(queue.sent[0])
    assert request.dates == (D1, D2, D3)
    assert request.force is True
    assert "queued 1 build message(s) for 2025-03-01..2025-03-03" in result.stdout


def test_rebuild_of_a_long_range_queues_one_message_per_chunk(resources: Resources, queue: FakeQueue) -> None:
    result = invoke(
        resources, "rebuild", "--start", "2024-01-01", "--end", "2024-12-31", "--chunk-days", "31", "--json"
    )

    assert result.exit_code == 0, result.output
    requests = [parse_build_request(message) for message in queue.sent]
    assert [len(r.dates) for r in requests] == [31] * 11 + [366 - 11 * 31]
    assert [d for r in requests for d in r.dates] == [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(366)]
    document = json.loads(result.stdout)
    assert document["message_ids"] == [f"msg-{i}" for i in range(1, 13)]
    assert document["chunks"][0] == "2024-01-01..2024-01-31"


def test_rebuild_dry_run_prints_the_messages_and_queues_nothing(resources: Resources, queue: FakeQueue) -> None:
    result = invoke(resources, "rebuild", "--start", "2025-03-01", "--end", "2025-03-03", "--dry-run")

    assert result.exit_code == 0, result.output
    assert queue.sent == []
    assert '"end": "2025-03-03", "force": true, "reason": "cli rebuild", "start": "2025-03-01"' in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["status", "--date", "{tomorrow}"],
        ["backfill", "--start", "{yesterday}", "--end", "{today}"],
        ["backfill", "--start", "{today}", "--end", "{tomorrow}", "--dry-run"],
        ["rebuild", "--date", "{today}"],
        ["rebuild", "--start", "{yesterday}", "--end", "{tomorrow}", "--now"],
        ["rollback", "--date", "{today}", "--yes"],
        ["rollback", "--date", "{tomorrow}", "--dry-run"],
        ["replay", "--date", "{today}"],
        ["checks", "run", "--date", "{today}"],
        ["runs", "--date", "{tomorrow}"],
        ["alerts", "--date", "{today}"],
    ],
)
def test_every_command_refuses_a_date_after_yesterday_with_exit_2_and_changes_nothing(
    args: list[str], resources: Resources, warehouse: DuckDBWarehouse, queue: FakeQueue
) -> None:
    today = dt.datetime.now(dt.UTC).date()
    days = {"yesterday": today - dt.timedelta(days=1), "today": today, "tomorrow": today + dt.timedelta(days=1)}
    insert_analytics_rows(warehouse, today, ["C000001"], "run-b1")  # a row a rollback could delete
    tables = ("analytics.company_daily_activity", "ops.pipeline_runs", "ops.date_builds", "ops.data_quality_results")
    before = {table: count(warehouse, table) for table in tables}

    result = invoke(resources, *[a.format(**days) for a in args])

    assert result.exit_code == 2, result.output
    [line] = result.stderr.strip().splitlines()
    first_future = days["today"] if "{today}" in args or "{yesterday}" in args else days["tomorrow"]
    assert line == (
        f"error: {first_future} is in the future: the latest date that can be built is {days['yesterday']} "
        "(yesterday, UTC)"
    )
    assert {table: count(warehouse, table) for table in tables} == before
    assert queue.sent == []


# ---- backfill --dry-run -------------------------------------------------------------------------
def test_backfill_dry_run_lists_the_plan_and_changes_nothing(
    resources: Resources, warehouse: DuckDBWarehouse, gate: FakeGate
) -> None:
    insert_usage_pull(warehouse, D1, "usage-1")
    insert_build(warehouse, D1, None, "usage-1", 1, "run-b1")
    resources.state_table.upsert({"PartitionKey": "usage_pull", "RowKey": "2025-03-01"})
    gate.versions = {D1: InputVersions(None, "usage-1")}
    tables = ["stg.usage_pulls", "ops.date_builds", "ops.pipeline_runs", "analytics.company_daily_activity"]
    before = {t: count(warehouse, t) for t in tables}

    result = invoke(resources, "backfill", "--start", "2025-03-01", "--end", "2025-03-03", "--dry-run")

    assert result.exit_code == 0, result.output
    assert "would pull usage for 2 dates: 2025-03-02..2025-03-03" in result.stdout
    assert "already pulled (skipped): 1: 2025-03-01" in result.stdout
    assert "build 2025-03-02..2025-03-03 (2 dates)" in result.stdout
    assert "already built from the same inputs (skipped): 1" in result.stdout
    assert {t: count(warehouse, t) for t in tables} == before


def test_events_refresh_rolls_up_loaded_events_deduplicated(resources: Resources, warehouse: DuckDBWarehouse) -> None:
    from shared.services.events_rollup import load_fact_events

    today = dt.datetime.now(dt.UTC).date()
    stamp = f"{today.isoformat()}T08:00:00Z"
    load_fact_events(
        warehouse, [("e1", "acme", stamp), ("e1", "acme", stamp), ("e2", "acme", stamp)], dt.datetime(2030, 1, 1)
    )

    planned = invoke(resources, "events", "refresh", "--lookback-minutes", "0", "--dry-run", "--json")
    assert json.loads(planned.stdout) | {"loaded_through": None} == {
        "run_id": None,
        "dry_run": True,
        "days": [today.isoformat()],
        "count": 1,
        "loaded_through": None,
    }
    assert count(warehouse, "agg.company_daily_events") == 0

    result = invoke(resources, "events", "refresh", "--lookback-minutes", "0")

    assert result.exit_code == 0, result.output
    assert "refreshed 1 day(s)" in result.output
    rows = warehouse.run_sql("SELECT activity_date, company_id, event_count FROM agg.company_daily_events")
    assert rows == [{"activity_date": today, "company_id": "acme", "event_count": 2}]
