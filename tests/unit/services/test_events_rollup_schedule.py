"""The fact-events rollup runs after every usage tick, and never fails the tick."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from typing import Any

import pytest

from shared.adapters.warehouse.duckdb_engine import DuckDBWarehouse
from shared.errors import BuildError
from shared.rules.dates import PullPlan
from shared.services import events_rollup, usage_ingest
from shared.services.alerts import RecordingAlertSink
from shared.settings import Settings

NOW = dt.datetime(2025, 3, 10, 1, 0)


def _runs(warehouse: DuckDBWarehouse) -> list[dict[str, Any]]:
    return warehouse.run_sql("SELECT step, status, error_type FROM ops.pipeline_runs ORDER BY started_at")


def test_scheduled_refresh_rolls_up_and_records_the_run(warehouse: DuckDBWarehouse) -> None:
    events_rollup.load_fact_events(warehouse, [("e1", "acme", "2025-03-09T23:30:00-02:00")], NOW)
    alerts = RecordingAlertSink()

    result = events_rollup.refresh_on_schedule(warehouse, alerts, "p", "run-1", NOW, dt.timedelta(hours=1))

    assert result is not None and dt.date(2025, 3, 10) in result.days
    rows = warehouse.run_sql("SELECT activity_date, event_count FROM agg.company_daily_events")
    assert rows == [{"activity_date": dt.date(2025, 3, 10), "event_count": 1}]  # 23:30-02:00 is the next UTC day
    assert _runs(warehouse) == [{"step": "events_rollup", "status": "succeeded", "error_type": None}]
    assert alerts.alerts == []


def test_scheduled_refresh_failure_alerts_once_and_does_not_raise(
    warehouse: DuckDBWarehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise BuildError("agg/company_daily_events__refresh: statement 1 failed")

    monkeypatch.setattr(events_rollup, "refresh_company_daily_events", broken)
    alerts = RecordingAlertSink()

    assert events_rollup.refresh_on_schedule(warehouse, alerts, "p", "run-2", NOW, dt.timedelta(hours=1)) is None

    assert [a.title for a in alerts.alerts] == ["events_rollup failed: BuildError"]
    assert alerts.alerts[0].run_id == "run-2"
    assert _runs(warehouse) == [{"step": "events_rollup", "status": "failed", "error_type": "BuildError"}]


def test_usage_tick_refreshes_the_rollup_after_staging(
    warehouse: DuckDBWarehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    tick = usage_ingest.TickResult("run-3", PullPlan(dates=(), reasons={}, missed_beyond_bound=()), [])

    def fake_tick(*args: Any, **kwargs: Any) -> usage_ingest.TickResult:
        calls.append("usage")
        return tick

    def fake_refresh(
        wh: Any, alerts: Any, pipeline: str, run_id: str, now: dt.datetime, lookback: dt.timedelta
    ) -> None:
        calls.append(f"rollup {run_id} lookback={lookback}")

    monkeypatch.setattr(usage_ingest, "run_tick", fake_tick)
    monkeypatch.setattr(events_rollup, "refresh_on_schedule", fake_refresh)
    resources = SimpleNamespace(
        settings=Settings(events_lookback_minutes=90),
        warehouse=warehouse,
        alerts=RecordingAlertSink(),
        usage_api=SimpleNamespace(for_run=lambda: None),
    )

    assert usage_ingest.run_usage_tick(NOW, False, resources) is tick
    assert calls == ["usage", "rollup run-3 lookback=1:30:00"]
