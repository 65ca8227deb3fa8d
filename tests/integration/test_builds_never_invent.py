"""Builds never invent rows (Azurite readiness state + DuckDB): a future date is refused whole
with one line and an ops row; a date without inputs is skipped, not failed and not poisoned,
unless an operator forces it; nothing is written for either."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import pytest

from shared.adapters.warehouse.duckdb_engine import DuckDBWarehouse
from shared.errors import FutureDateRefused
from shared.services.alerts import RecordingAlertSink
from shared.services.usage_ingest import replay_from_raw
from shared.settings import Settings
from shared.wiring import Resources

pytestmark = pytest.mark.integration

TODAY = dt.datetime.now(dt.UTC).date()
YESTERDAY = TODAY - dt.timedelta(days=1)
CRM = "company_id,name,country,industry_tag,last_contact_at\n" + "".join(
    f"c{i:02d},Company {i},DE,saas,\n" for i in range(30)
)


@pytest.fixture
def resources(
    storage_settings: Settings, make_resources: Callable[..., Resources], warehouse: DuckDBWarehouse
) -> Resources:
    resources = make_resources(storage_settings, warehouse=warehouse)
    # A CRM snapshot of 30 companies, but no usage at all: every date lacks its usage input.
    resources.blobs.write(storage_settings.crm_container, f"crm_{YESTERDAY}.csv", CRM.encode())
    resources.stage_crm_blob(f"crm_{YESTERDAY}.csv")
    return resources


def send(resources: Resources, payload: dict) -> Any:
    return resources.handle_build_message(json.dumps(payload).encode(), dequeue_count=1, message_id="m-1")


def analytics_rows(warehouse: DuckDBWarehouse) -> int:
    return warehouse.run_sql("SELECT COUNT(*) AS n FROM analytics.company_daily_activity")[0]["n"]


def build_runs(warehouse: DuckDBWarehouse) -> list[tuple[str, str | None]]:
    rows = warehouse.run_sql("SELECT status, error_message FROM ops.pipeline_runs WHERE step = 'build'")
    return [(r["status"], r["error_message"]) for r in rows]


def test_a_message_for_tomorrow_is_refused_and_writes_nothing(
    resources: Resources, warehouse: DuckDBWarehouse, caplog: pytest.LogCaptureFixture
) -> None:
    tomorrow = TODAY + dt.timedelta(days=1)
    assert send(resources, {"dates": [tomorrow.isoformat()], "force": True}) is None  # not even forced

    assert analytics_rows(warehouse) == 0
    ((status, note),) = build_runs(warehouse)
    assert status == "refused" and f"{tomorrow} is in the future" in (note or "")
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert refused == [f"build refused, nothing written: {note.removeprefix('FutureDateRefused: ')}"]
    sink = resources.alerts
    assert isinstance(sink, RecordingAlertSink)
    assert [a.title for a in sink.alerts] == ["Build of a future date refused"]


def test_a_range_running_into_the_future_is_refused_whole(resources: Resources, warehouse: DuckDBWarehouse) -> None:
    payload = {"start": (TODAY - dt.timedelta(days=5)).isoformat(), "end": (TODAY + dt.timedelta(days=60)).isoformat()}
    assert send(resources, payload) is None
    assert analytics_rows(warehouse) == 0
    assert [s for s, _ in build_runs(warehouse)] == ["refused"]


def test_a_date_without_usage_is_skipped_not_built_and_not_failed(
    resources: Resources, warehouse: DuckDBWarehouse
) -> None:
    outcome = send(resources, {"dates": [YESTERDAY.isoformat()]})
    assert outcome is not None and outcome.skipped  # returns normally: no retry, no poison
    assert analytics_rows(warehouse) == 0
    ((status, note),) = build_runs(warehouse)
    assert status == "skipped" and "no inputs yet" in (note or "")


def test_an_operator_may_force_a_past_date_without_usage(resources: Resources, warehouse: DuckDBWarehouse) -> None:
    outcome = send(resources, {"dates": [YESTERDAY.isoformat()], "force": True})
    assert outcome is not None
    assert analytics_rows(warehouse) == 30  # the CRM companies, with 0 / 0 usage, built on purpose


def test_a_replay_of_a_future_date_is_refused_before_anything_is_read(
    resources: Resources, warehouse: DuckDBWarehouse
) -> None:
    tomorrow = TODAY + dt.timedelta(days=1)
    with pytest.raises(FutureDateRefused, match=f"{tomorrow} is in the future"):
        replay_from_raw(tomorrow, resources, "run-replay", dt.datetime.now(dt.UTC))
    assert warehouse.run_sql("SELECT COUNT(*) AS n FROM stg.product_usage") == [{"n": 0}]
