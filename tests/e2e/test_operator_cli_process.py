"""The operator CLI as an operator runs it: the console entry point of pyproject.toml in its own
process, a settings file, real exit codes, real Ctrl-C (SIGINT), and the warehouse checked before
and after each command, not only the output.

The pipeline is first run through the local trigger runner (Azurite, the mock usage API, a
DuckDB file); its warehouse connection is then closed, because a DuckDB file has one writer
process at a time, and each command runs in a subprocess against the same file. The test reads
the file between commands with a connection of its own, closed again before the next command.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from pydantic import SecretStr

from shared.adapters.warehouse.base import checked_table_name
from shared.adapters.warehouse.duckdb_engine import DuckDBWarehouse
from shared.services.alert_deliveries import RecordedAlertSink
from shared.settings import Settings
from shared.wiring import Resources

if TYPE_CHECKING:  # the fixtures come from tests/e2e/conftest.py; only their types are named here
    from tests.e2e.conftest import Pipeline, PipelineFactory

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
ENTRY_POINT = "company-activity"
RESULT_TABLES = ("analytics.company_daily_activity", "stg.product_usage", "stg.crm_companies", "dim.companies")
VOLATILE = frozenset({"run_id", "record_loaded_at", "ingested_at", "loaded_at", "load_id", "source_blob"})
YESTERDAY = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
TODAY = YESTERDAY + dt.timedelta(days=1)


def entry_point_command() -> list[str]:
    """What the console script pip generates from [project.scripts] runs: import and call."""
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    module, function = scripts[ENTRY_POINT].split(":")
    return [sys.executable, "-c", f"import sys; from {module} import {function}; sys.exit({function}())"]


class Webhook:
    """A Teams/Slack stand-in on 127.0.0.1 answering ``status``."""

    def __init__(self) -> None:
        self.status = 500
        self.bodies: list[dict[str, Any]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                hook.bodies.append(json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0)))))
                self.send_response(hook.status)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhook/token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Operator:
    """A settings file, the DuckDB file it names, and the entry point to run against them."""

    pipeline: Pipeline
    settings_file: Path
    duckdb_path: Path

    def run(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*entry_point_command(), "--settings", str(self.settings_file), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env(),
            cwd=self.settings_file.parent,
            check=False,
        )

    def run_json(self, *args: str, expect: int = 0) -> Any:
        done = self.run(*args, "--json")
        assert done.returncode == expect, f"exit {done.returncode}: {done.stderr}"
        return json.loads(done.stdout)

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*entry_point_command(), "--settings", str(self.settings_file), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env(),
            cwd=self.settings_file.parent,
        )

    def run_resume(self, hint: str) -> subprocess.CompletedProcess[str]:
        """Run the printed resume command as typed (its program name is the entry point)."""
        program, *args = shlex.split(hint)
        assert program == ENTRY_POINT
        return subprocess.run(
            [*entry_point_command(), *args],
            capture_output=True,
            text=True,
            timeout=300,
            env=self.env(),
            cwd=self.settings_file.parent,
            check=False,
        )

    @staticmethod
    def env() -> dict[str, str]:
        # Nothing of the test's environment configures the command: only the settings file does.
        return {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO), "HOME": os.environ.get("HOME", "/tmp")}

    @contextlib.contextmanager
    def warehouse(self) -> Iterator[DuckDBWarehouse]:
        engine = DuckDBWarehouse(self.duckdb_path)
        try:
            yield engine
        finally:
            engine.close()

    def tables(self) -> dict[str, list[tuple[Any, ...]]]:
        with self.warehouse() as wh:
            return {name: stable_rows(wh, name) for name in RESULT_TABLES}

    def query(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        with self.warehouse() as wh:
            return wh.run_sql(sql, params)

    def ops_counts(self) -> dict[str, int]:
        tables = ("ops.pipeline_runs", "ops.date_builds", "ops.data_quality_results", "ops.alert_deliveries")
        return {t: int(self.query(f"SELECT COUNT(*) AS n FROM {checked_table_name(t)}")[0]["n"]) for t in tables}


def stable_rows(wh: DuckDBWarehouse, name: str) -> list[tuple[Any, ...]]:
    rows = wh.run_sql(f"SELECT * FROM {checked_table_name(name)}")
    return sorted((tuple(sorted((k, v) for k, v in r.items() if k not in VOLATILE)) for r in rows), key=repr)


def settings_values(settings: Settings) -> dict[str, str]:
    """The settings that differ from the defaults, as a local.settings.json would hold them."""
    values = {}
    defaults = Settings()
    for name, field in Settings.model_fields.items():
        value = getattr(settings, name)
        if value == getattr(defaults, name) or value is None:
            continue
        alias = field.validation_alias.choices[0]  # type: ignore[union-attr]
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        values[str(alias)] = str(getattr(value, "value", value))
    return values


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.stop()


@pytest.fixture
def make_operator(make_pipeline: PipelineFactory, tmp_path: Path) -> Callable[..., Operator]:
    def make(run: Callable[[Pipeline], None], **settings_values_: Any) -> Operator:
        duckdb_path = tmp_path / "warehouse.duckdb"
        pipeline = make_pipeline(
            companies=15, days=6, include_bad_file=False, DUCKDB_PATH=str(duckdb_path), **settings_values_
        )
        run(pipeline)
        pipeline.resources.warehouse.close()  # one writer per DuckDB file: the commands' turn
        settings_file = tmp_path / "operator.settings.json"
        settings_file.write_text(json.dumps({"IsEncrypted": False, "Values": settings_values(pipeline.settings)}))
        return Operator(pipeline, settings_file, duckdb_path)

    return make


def everything(pipeline: Pipeline) -> None:
    pipeline.run_everything()


def crm_only(pipeline: Pipeline) -> None:
    pipeline.upload_crm()
    pipeline.process()


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


# ---- safety: future dates, missing settings, rollback -----------------------------------------------
def test_commands_refuse_future_dates_and_a_missing_settings_file_changing_nothing(
    make_operator: Callable[..., Operator], tmp_path: Path
) -> None:
    op = make_operator(everything)
    before, ops_before = op.tables(), op.ops_counts()

    for args in (
        ["rebuild", "--date", str(TODAY), "--now"],
        ["backfill", "--start", str(YESTERDAY), "--end", str(TODAY + dt.timedelta(days=2))],
        ["rollback", "--date", str(TODAY), "--yes"],
    ):
        done = op.run(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert one_line(done.stderr) == (
            f"error: {TODAY} is in the future: the latest date that can be built is {YESTERDAY} (yesterday, UTC)"
        )

    missing = tmp_path / "elsewhere" / "local.settings.json"
    done = subprocess.run(
        [
            *entry_point_command(),
            "--settings",
            str(missing),
            "backfill",
            "--start",
            str(YESTERDAY),
            "--end",
            str(YESTERDAY),
        ],
        capture_output=True,
        text=True,
        env=op.env(),
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 2 and f"{missing} does not exist" in done.stderr
    assert not (tmp_path / ".data").exists(), "no default warehouse was created"

    assert op.tables() == before
    assert op.ops_counts() == ops_before


def test_rollback_dry_run_then_rollback_then_never_built_then_rebuild_now(
    make_operator: Callable[..., Operator],
) -> None:
    op = make_operator(everything)
    day = op.pipeline.dates[3]
    before = op.tables()
    rows = op.query("SELECT COUNT(*) AS n FROM analytics.company_daily_activity WHERE activity_date = @d", d=day)[0][
        "n"
    ]

    preview = op.run_json("rollback", "--date", str(day), "--dry-run")
    assert (preview["dry_run"], preview["analytics_rows_removed"], preview["run_id"]) == (True, rows, None)
    assert op.tables() == before

    done = op.run_json("rollback", "--date", str(day), "--yes")
    assert (done["analytics_rows_removed"], done["build_record_removed"]) == (rows, True)
    assert op.query("SELECT COUNT(*) AS n FROM analytics.company_daily_activity WHERE activity_date = @d", d=day) == [
        {"n": 0}
    ]
    again = op.run("rollback", "--date", str(day), "--yes")
    assert again.returncode == 0
    assert f"{day} was never built (or is already rolled back)" in again.stdout

    rebuilt = op.run_json("rebuild", "--date", str(day), "--now")
    assert rebuilt["dates_built"] >= 1 and len(rebuilt["run_ids"]) == 1
    assert op.tables() == before
    status = op.run_json("status", "--date", str(day))[0]
    assert status["build"]["up_to_date"] is True and status["build"]["run_id"] == rebuilt["run_ids"][0]

    runs = op.run_json("runs", "--step", "rollback")
    assert [(r["run_id"], r["status"], r["rows_in"]) for r in runs["runs"]] == [(done["run_id"], "succeeded", rows)]
    assert op.run_json("runs", "--date", str(day), "--step", "build")["runs"][0]["run_id"] == rebuilt["run_ids"][0]


# ---- replay --------------------------------------------------------------------------------------
def test_replay_finds_lost_staged_rows_under_intact_bookkeeping_and_restores_them(
    make_operator: Callable[..., Operator],
) -> None:
    op = make_operator(everything)
    day = op.pipeline.dates[2]
    before = op.tables()
    with op.warehouse() as wh:  # rows lost, the version rows (usage_pulls, crm_snapshots) intact
        wh.run_sql("DELETE FROM stg.product_usage WHERE activity_date = @d AND company_id <= 'C000005'", {"d": day})
        wh.run_sql("UPDATE stg.crm_companies SET attributes_hash = 'x' WHERE snapshot_date = @d", {"d": day})
    damaged = op.tables()

    plan = op.run_json("replay", "--date", str(day), "--dry-run")
    usage, crm = plan["dates"][0]["inputs"]
    assert (usage["would_restore"], usage["restored"], usage["comparison"]["missing"] > 0) == (True, False, True)
    assert (crm["would_restore"], crm["comparison"]["changed"] > 0) == (True, True)
    assert op.tables() == damaged

    done = op.run_json("replay", "--date", str(day))
    assert done["dates"][0]["restored"] == ["usage", "crm"]
    assert op.tables() == before

    unchanged = op.run_json("replay", "--start", str(op.pipeline.dates[0]), "--end", str(op.pipeline.dates[-1]))
    assert unchanged["restored"] == 0


# ---- checks and alerts -----------------------------------------------------------------------------
def test_checks_run_records_results_and_alert_deliveries_failed_ones_retried_by_the_next_tick(
    make_operator: Callable[..., Operator], webhook: Webhook
) -> None:
    op = make_operator(everything, ALERT_WEBHOOK_URL=webhook.url, ALERT_DEDUP_MINUTES="0")
    days = op.pipeline.dates

    ran = op.run_json("checks", "run", "--start", str(days[0]), "--end", str(days[-1]))

    assert ran["checked"] == [str(d) for d in days] and ran["counts"]["fail"] == 0
    stored = op.query("SELECT COUNT(*) AS n FROM ops.data_quality_results WHERE run_id = @r", r=ran["run_id"])
    assert stored[0]["n"] == len(ran["results"]) > 0
    failed = op.run_json("alerts", "--status", "failed")["alerts"]
    assert failed, "the webhook answered 500: the deliveries failed and are recorded"
    assert {(a["step"], a["attempts"], a["last_error_type"]) for a in failed} == {("quality", 1, "UpstreamUnavailable")}

    webhook.status = 200
    resources = Resources(Settings.from_local_settings(op.settings_file, environ={}))
    try:
        assert isinstance(resources.alerts, RecordedAlertSink)
        resources.run_usage_tick(dt.datetime.now(dt.UTC))
    finally:
        resources.warehouse.close()

    after = {a["delivery_id"]: a for a in op.run_json("alerts")["alerts"]}
    assert [(after[a["delivery_id"]]["status"], after[a["delivery_id"]]["attempts"]) for a in failed] == [
        ("sent", 2)
    ] * len(failed)


# ---- Ctrl-C --------------------------------------------------------------------------------------
def interrupt_after_first_build(op: Operator, *args: str) -> tuple[int, str]:
    """Start the command, send SIGINT once the builder logged its first committed build."""
    process = op.start("--verbose", *args)
    assert process.stderr is not None
    seen: list[str] = []
    for line in process.stderr:
        seen.append(line)
        if "built " in line and " rows for " in line:
            process.send_signal(signal.SIGINT)
            break
    else:
        pytest.fail("the command ended before building anything:\n" + "".join(seen))
    rest = process.communicate(timeout=120)[1]
    return process.returncode, "".join(seen) + rest


def assert_nothing_half_written(op: Operator) -> None:
    """Each date holds the rows its recorded build wrote, or none at all."""
    built = {
        r["activity_date"]: r["row_count"] for r in op.query("SELECT activity_date, row_count FROM ops.date_builds")
    }
    current = {
        r["activity_date"]: r["n"]
        for r in op.query("SELECT activity_date, COUNT(*) AS n FROM analytics.company_daily_activity GROUP BY 1")
    }
    assert current == {d: n for d, n in built.items() if n}


def test_ctrl_c_during_a_backfill_exits_130_and_the_printed_command_resumes_with_the_missing_checks(
    make_operator: Callable[..., Operator],
) -> None:
    op = make_operator(crm_only)
    dates = op.pipeline.dates
    args = ["backfill", "--start", str(dates[0]), "--end", str(dates[-1]), "--chunk-days", "2"]

    code, stderr = interrupt_after_first_build(op, *args)

    assert code == 130, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("interrupted: what finished is committed, what was running was rolled back; resume with: ")
    hint = last.split("resume with: ", 1)[1]
    assert shlex.split(hint) == [ENTRY_POINT, "--settings", str(op.settings_file), *args]
    assert_nothing_half_written(op)

    resumed = op.run_resume(hint)

    assert resumed.returncode == 0, resumed.stderr
    status = op.run_json("status", "--start", str(dates[0]), "--end", str(dates[-1]))
    assert all(s["build"]["up_to_date"] and s["build"]["checked_at"] for s in status), status
    rows = {
        r["activity_date"]: r["n"]
        for r in op.query("SELECT activity_date, COUNT(*) AS n FROM analytics.company_daily_activity GROUP BY 1")
    }
    assert rows == {d: op.pipeline.expected_rows(d) for d in dates}
    again = op.run("backfill", "--start", str(dates[0]), "--end", str(dates[-1]))
    assert "built 0 dates in 0 chunks (6 already up to date), ran the missing checks of 0 dates" in again.stdout


def test_ctrl_c_during_rebuild_now_exits_130_and_resumes_from_the_interrupted_chunk(
    make_operator: Callable[..., Operator],
) -> None:
    op = make_operator(everything)
    dates = op.pipeline.dates
    before = op.tables()
    chunk_starts = {str(d) for d in dates[::2]}

    code, stderr = interrupt_after_first_build(
        op, "rebuild", "--start", str(dates[0]), "--end", str(dates[-1]), "--now", "--chunk-days", "2"
    )

    assert code == 130, stderr
    hint = stderr.strip().splitlines()[-1].split("resume with: ", 1)[1]
    resume = shlex.split(hint)
    assert resume[resume.index("--start") + 1] in chunk_starts
    assert resume[resume.index("--end") + 1] == str(dates[-1]) and "--now" in resume
    assert_nothing_half_written(op)
    assert op.tables() == before  # a forced rebuild of the same inputs writes the same rows

    assert op.run_resume(hint).returncode == 0
    status = op.run_json("status", "--start", str(dates[0]), "--end", str(dates[-1]))
    assert all(s["build"]["up_to_date"] for s in status)
    assert op.tables() == before


# ---- --json everywhere ---------------------------------------------------------------------------
def test_the_other_commands_print_one_json_document_too(make_operator: Callable[..., Operator]) -> None:
    """status, runs, alerts, checks, replay and rollback are read as JSON by the tests above."""
    op = make_operator(everything)
    day = str(op.pipeline.dates[-1])

    documents = {
        "schema apply --dry-run": op.run_json("schema", "apply", "--dry-run"),
        "backfill --dry-run": op.run_json("backfill", "--start", day, "--end", day, "--dry-run"),
        "rebuild --dry-run": op.run_json("rebuild", "--date", day, "--dry-run"),
        "events refresh": op.run_json("events", "refresh"),
        "error": op.run_json("rebuild", "--date", str(TODAY), expect=2),
    }

    assert documents["schema apply --dry-run"] == {"count": 0, "dry_run": True, "would_apply": []}
    assert documents["backfill --dry-run"]["pull"] == [] and documents["backfill --dry-run"]["check"] == []
    assert documents["rebuild --dry-run"]["messages"] == [
        {"start": day, "end": day, "reason": "cli rebuild", "force": True}
    ]
    assert documents["events refresh"]["run_id"]
    assert documents["error"]["exit_code"] == 2 and documents["error"]["error"]["type"] == "FutureDateRefused"
