"""A usage day with records the warehouse's column types cannot hold, on Azurite + DuckDB: the
bad records are rejected into the day's report, the rest is staged, and the alert names each
record by its line and the rule it broke, in words (never the engine's text)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import pytest

from shared.adapters.usage_api import DayPull
from shared.adapters.warehouse.duckdb_engine import DuckDBWarehouse
from shared.services.alerts import RecordingAlertSink
from shared.services.readiness import MarkResult
from shared.services.usage_ingest import ingest_date, raw_rejects_path
from shared.settings import Settings
from shared.wiring import Resources

pytestmark = pytest.mark.integration

DAY = dt.date(2025, 3, 9)
NOW = dt.datetime(2025, 3, 10, 1, 0, tzinfo=dt.UTC)


class Gate:
    def __init__(self) -> None:
        self.marks: list[tuple[dt.date, int]] = []

    def mark_input_present(
        self, activity_date: dt.date, input_name: str, version: str, rows: int, now: dt.datetime, run_id: str
    ) -> MarkResult:
        self.marks.append((activity_date, rows))
        return MarkResult(activity_date, True, True)


class OnePull:
    """A usage source answering one day with exactly these records (as the API sent them)."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.ndjson = b"".join(json.dumps(r).encode() + b"\n" for r in records)
        self.count = len(records)

    def fetch_day(self, day: dt.date) -> DayPull:
        return DayPull(day, NOW.replace(tzinfo=None), 1, self.count, [], lambda: iter([self.ndjson]))


def record(company_id: str, active_users: int = 3, events: int = 10) -> dict[str, Any]:
    return {"company_id": company_id, "date": DAY.isoformat(), "active_users": active_users, "events": events}


@pytest.fixture
def resources(
    make_storage_settings: Callable[..., Settings], make_resources: Callable[..., Resources], warehouse: DuckDBWarehouse
) -> Resources:
    # 3 bad of 60 = 5 %: at the default threshold, so the day is staged without them.
    return make_resources(make_storage_settings(), warehouse=warehouse, readiness=Gate())


def test_counts_beyond_int_and_bigint_and_an_overlong_id_are_rejected_and_the_rest_staged(
    resources: Resources, warehouse: DuckDBWarehouse
) -> None:
    records = [record(f"c{i:02d}") for i in range(57)]
    records.insert(5, record("huge-events", events=2**63))  # line 6: one past BIGINT
    records.insert(9, record("x" * 10_000))  # line 10: the column is NVARCHAR(64)
    records.append(record("huge-users", active_users=2**31))  # line 60: one past INT
    assert len(records) == 60

    staged = ingest_date(DAY, OnePull(records), resources, "run-limits", NOW)

    assert staged.rows == 57
    rows = warehouse.run_sql("SELECT COUNT(*) AS n, MAX(LENGTH(company_id)) AS longest FROM stg.product_usage")
    assert rows == [{"n": 57, "longest": 3}]
    report = json.loads(resources.blobs.read_bytes(resources.settings.raw_container, raw_rejects_path(DAY)))
    assert report["rejects_by_reason"] == {
        "events_out_of_range": 1,
        "company_id_too_long": 1,
        "active_users_out_of_range": 1,
    }
    sink = resources.alerts
    assert isinstance(sink, RecordingAlertSink)
    (alert,) = sink.alerts
    assert "line 6: events is above the warehouse column's BIGINT maximum" in alert.message
    assert "line 10: company_id is longer than the warehouse column (NVARCHAR(64))" in alert.message
    assert "line 60: active_users is above the warehouse column's INT maximum" in alert.message
    assert "x" * 100 not in alert.message and "Conversion" not in alert.message


def test_a_value_at_the_column_maximum_is_staged(resources: Resources, warehouse: DuckDBWarehouse) -> None:
    records = [record("m" * 64, active_users=2**31 - 1, events=2**63 - 1)]
    ingest_date(DAY, OnePull(records), resources, "run-max", NOW)
    assert warehouse.run_sql("SELECT active_users, events FROM stg.product_usage") == [
        {"active_users": 2**31 - 1, "events": 2**63 - 1}
    ]


def test_a_lone_surrogate_in_an_id_is_rejected_not_a_failed_day(
    resources: Resources, warehouse: DuckDBWarehouse
) -> None:
    source = OnePull([record(f"c{i:02d}") for i in range(30)])
    source.ndjson += b'{"company_id": "bad\\ud800", "date": "2025-03-09", "active_users": 1, "events": 1}\n'
    source.count += 1
    staged = ingest_date(DAY, source, resources, "run-surrogate", NOW)
    assert staged.rows == 30
    report = json.loads(resources.blobs.read_bytes(resources.settings.raw_container, raw_rejects_path(DAY)))
    assert report["rejects_by_reason"] == {"company_id_invalid_unicode": 1}
