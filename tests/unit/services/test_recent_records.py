"""Recent runs and alert deliveries (shared.services.recent_records): one query shape for both."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest

from shared.adapters.warehouse.duckdb_engine import DuckDBWarehouse
from shared.errors import FutureDateRefused
from shared.services.alert_deliveries import RecordedAlertSink
from shared.services.alerts import Alert, RecordingAlertSink
from shared.services.recent_records import recent_records
from shared.services.run_history import record_run

NOW = dt.datetime(2025, 3, 10, 12, 0, tzinfo=dt.UTC)
DAY = dt.date(2025, 3, 8)


@pytest.fixture
def warehouse() -> DuckDBWarehouse:
    wh = DuckDBWarehouse(":memory:")
    wh.apply_schema()
    return wh


def alert(step: str, date: dt.date) -> Alert:
    return Alert(pipeline="p", step=step, severity="error", title=f"{step} failed", message="m", date=date)


def test_runs_are_filtered_by_step_and_date_and_come_as_json_values(warehouse: DuckDBWarehouse) -> None:
    for run_id, step, day in (("r1", "build", DAY), ("r2", "rollback", DAY), ("r3", "build", DAY - dt.timedelta(1))):
        with record_run(warehouse, step=step, run_id=run_id, run_date=day):
            pass

    rows = recent_records(SimpleNamespace(warehouse=warehouse), "runs", day=DAY, step="build", clock=lambda: NOW)

    assert [(r["run_id"], r["run_date"], r["status"]) for r in rows] == [("r1", "2025-03-08", "succeeded")]


def test_alerts_are_filtered_by_the_same_options(warehouse: DuckDBWarehouse) -> None:
    sink = RecordedAlertSink(RecordingAlertSink(), lambda: warehouse)
    sink.send(alert("build", DAY))
    sink.send(alert("usage_pull", DAY))
    sink.send(alert("build", DAY - dt.timedelta(1)))

    rows = recent_records(SimpleNamespace(warehouse=warehouse), "alerts", day=DAY, step="build", clock=lambda: NOW)

    assert [(r["title"], r["alert_date"], r["status"]) for r in rows] == [("build failed", "2025-03-08", "sent")]


@pytest.mark.parametrize("records", ["runs", "alerts"])
def test_a_future_date_is_refused_before_the_warehouse_is_read(records: str) -> None:
    with pytest.raises(FutureDateRefused):
        recent_records(SimpleNamespace(), records, day=NOW.date(), clock=lambda: NOW)  # type: ignore[arg-type]
