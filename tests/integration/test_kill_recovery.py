"""A process killed mid-staging (SIGKILL, in a child process, on Azurite + a DuckDB file) leaves
its landing rows and a ``running`` row behind. The next process to start marks the run
``abandoned``, alerts once, removes the landing rows, and the re-delivered blob stages exactly once.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

from shared.adapters.warehouse.duckdb_engine import DuckDBWarehouse
from shared.rules.date_ranges import DateRange
from shared.services.alerts import RecordingAlertSink
from shared.services.status import date_reports
from shared.settings import Settings
from shared.wiring import Resources

pytestmark = pytest.mark.integration

NAME = "crm_2025-11-30.csv"
ROWS = 100_000

# The child stages the blob with a clock two hours back (as if the kill happened two hours ago)
# and kills itself with SIGKILL just before the swap, when every row is in the landing table.
CHILD = r"""
import datetime as dt, json, os, signal, sys
from shared.adapters.warehouse.duckdb_engine import DuckDBWarehouse
from shared.services.alerts import RecordingAlertSink
from shared.rules.date_ranges import DateRange
from shared.services.status import date_reports
from shared.services.crm_staging import stage_crm_snapshot
from shared.settings import Settings
from shared.wiring import Resources

resources = Resources(Settings.from_values(json.loads(sys.argv[1])), alerts=RecordingAlertSink())
warehouse = resources.warehouse
real_run = warehouse.run

def run(name, params=None):
    if name == "stg/crm_companies__load":
        os.kill(os.getpid(), signal.SIGKILL)
    return real_run(name, params)

warehouse.run = run
two_hours_ago = lambda: dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(hours=2)
stage_crm_snapshot(sys.argv[2], settings=resources.settings, blobs=resources.blobs, warehouse=warehouse,
                   readiness=resources.readiness, alerts=resources.alerts, run_id="killed-run", clock=two_hours_ago)
"""


def migrated(path: Path) -> None:
    """Migrations are a deploy step: the app only checks the schema version."""
    warehouse = DuckDBWarehouse(path)
    warehouse.apply_schema()
    warehouse.close()


def read(path: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_a_run_killed_mid_staging_is_abandoned_its_debris_removed_and_the_blob_staged_once(
    make_storage_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    db = tmp_path / "w.duckdb"
    migrated(db)
    settings = make_storage_settings(DUCKDB_PATH=str(db))
    header = "company_id,name,country,industry_tag,last_contact_at\n"
    body = "".join(f"c{i:06d},Company {i},DE,saas,2025-11-01T00:00:00\n" for i in range(ROWS))
    Resources(settings).blobs.write(settings.crm_container, NAME, (header + body).encode())

    values = settings.model_dump(by_alias=False, mode="json")
    values["pipeline_storage"] = settings.storage_connection_string()
    child = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(values), NAME],
        cwd=Path(__file__).parents[2],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    assert read(db, "SELECT COUNT(*) FROM stg.crm_companies_landing") == [(ROWS,)]
    assert read(db, "SELECT status FROM ops.pipeline_runs WHERE run_id = 'killed-run'") == [("running",)]

    # The next process starts: recovery runs before anything else touches the warehouse.
    alerts = RecordingAlertSink()
    resources = Resources(settings, alerts=alerts)
    warehouse = resources.warehouse
    assert warehouse.run_sql("SELECT COUNT(*) AS n FROM stg.crm_companies_landing") == [{"n": 0}]
    runs = warehouse.run_sql("SELECT status, error_type FROM ops.pipeline_runs WHERE run_id = 'killed-run'")
    assert runs == [{"status": "abandoned", "error_type": "Abandoned"}]
    assert [(a.title, a.run_id, a.subject) for a in alerts.alerts] == [
        ("Run abandoned", "killed-run", "run killed-run/crm_staging")
    ]
    assert "no heartbeat since" in alerts.alerts[0].message
    (status,) = date_reports(warehouse, DateRange.single(dt.date(2025, 11, 30)))
    assert [(r["kind"], r["subject"], r["status"]) for r in status.recovery] == [
        ("abandoned_run", "killed-run/crm_staging", "abandoned")
    ]

    # The host re-delivers the blob (its receipt was never written): staged once, in full.
    result = resources.stage_crm_blob(NAME)
    assert (result.status, result.rows_staged) == ("staged", ROWS)
    assert warehouse.run_sql("SELECT COUNT(*) AS n FROM stg.crm_companies") == [{"n": ROWS}]
    assert warehouse.run_sql("SELECT COUNT(*) AS n FROM stg.crm_companies_landing") == [{"n": 0}]
    warehouse.close()

    # A further start finds nothing to recover and says nothing.
    again = RecordingAlertSink()
    Resources(settings, alerts=again).warehouse.close()
    assert again.alerts == []


def test_a_live_run_within_its_lease_is_left_alone(
    make_storage_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    migrated(tmp_path / "w.duckdb")
    settings = make_storage_settings(DUCKDB_PATH=str(tmp_path / "w.duckdb"))
    first = Resources(settings, alerts=RecordingAlertSink())
    warehouse = first.warehouse
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    warehouse.run(
        "ops/pipeline_runs__start",
        {"run_id": "live", "step": "build", "run_date": None, "trigger_name": None, "started_at": now},
    )
    warehouse.bulk_load(
        "ops.date_builds_landing",
        ("run_id", "activity_date", "crm_version", "usage_version"),
        [("live", dt.date(2025, 1, 1), "c", "u")],
    )
    from shared.services.run_history import recover_abandoned_runs

    alerts = RecordingAlertSink()
    report = recover_abandoned_runs(
        warehouse, alerts, pipeline="p", lease=dt.timedelta(minutes=30), now=now + dt.timedelta(minutes=29), run_id="r"
    )
    assert report.abandoned == [] and report.landing_rows_removed == {} and alerts.alerts == []
    assert warehouse.run_sql("SELECT COUNT(*) AS n FROM ops.date_builds_landing") == [{"n": 1}]
