"""CRM ingestion against a real Azurite and DuckDB: the blob trigger's service end to end.

Blobs are uploaded with the real BlobStore; readiness is a recording fake (the readiness gate
has its own tests). Each test gets its own containers (tests/conftest.py).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import pytest

from shared.adapters.blob_store import BlobStore
from shared.adapters.warehouse.duckdb_engine import DuckDBWarehouse
from shared.services.alerts import RecordingAlertSink
from shared.services.readiness import MarkResult
from shared.settings import Settings
from shared.wiring import Resources

pytestmark = pytest.mark.integration

HEADER = "company_id,name,country,industry_tag,last_contact_at\n"
S1, S2, S3 = dt.date(2025, 11, 28), dt.date(2025, 11, 29), dt.date(2025, 11, 30)
SNAPSHOTS = {
    # c1 renamed at S2; c2 moves country at S3; c3 absent from S2, back at S3.
    S1: HEADER + "c1,Acme,DE,saas,2025-11-01T09:00:00+01:00\nc2,Beta,FR,retail,\nc3,Gamma,US,saas,\n",
    S2: HEADER + "c1,Acme Corp,DE,saas,2025-11-01T08:00:00Z\nc2,Beta,FR,retail,\n",
    S3: HEADER + "c1,Acme Corp,DE,saas,2025-11-01T08:00:00\nc2,Beta,IT,retail,\nc3,Gamma,US,saas,\n",
}


class RecordingReadiness:
    def __init__(self) -> None:
        self.marks: list[tuple[dt.date, str, str, int]] = []

    def mark_input_present(
        self, activity_date: dt.date, input_name: str, version: str, rows: int, now: dt.datetime, run_id: str
    ) -> MarkResult:
        self.marks.append((activity_date, input_name, version, rows))
        return MarkResult(activity_date, True, False)


@pytest.fixture
def readiness() -> RecordingReadiness:
    return RecordingReadiness()


@pytest.fixture
def resources(
    storage_settings: Settings,
    make_resources: Callable[..., Resources],
    warehouse: DuckDBWarehouse,
    readiness: RecordingReadiness,
) -> Resources:
    return make_resources(storage_settings, warehouse=warehouse, readiness=readiness)


def upload(resources: Resources, name: str, content: str | bytes) -> None:
    data = content.encode("utf-8") if isinstance(content, str) else content
    resources.blobs.write(resources.settings.crm_container, name, data, content_type="text/csv")


def table(warehouse: DuckDBWarehouse, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(r.values()) for r in warehouse.run_sql(sql)]


def all_tables(warehouse: DuckDBWarehouse) -> dict[str, list[tuple[Any, ...]]]:
    return {
        name: sorted(table(warehouse, f"SELECT * FROM {name}"), key=repr)
        for name in (
            "stg.crm_companies",
            "stg.crm_snapshots",
            "stg.crm_companies_landing",
            "dim.companies",
            "dim.companies_rebuild",
            "ops.quarantined_files",
        )
    }


def test_three_snapshots_are_staged_with_the_right_dims_and_each_date_marked_present(
    resources: Resources, warehouse: DuckDBWarehouse, readiness: RecordingReadiness
) -> None:
    results = []
    for day, content in SNAPSHOTS.items():
        upload(resources, f"crm_{day}.csv", content)
        results.append(resources.stage_crm_blob(f"crm_{day}.csv"))

    assert [r.status for r in results] == ["staged"] * 3
    assert readiness.marks == [(r.snapshot_date, "crm", r.version, r.rows_staged) for r in results]
    assert [m[0] for m in readiness.marks] == [S1, S2, S3]
    assert table(
        warehouse, "SELECT snapshot_date, COUNT(*) FROM stg.crm_companies GROUP BY snapshot_date ORDER BY 1"
    ) == [
        (S1, 3),
        (S2, 2),
        (S3, 3),
    ]
    assert table(
        warehouse,
        "SELECT company_id, valid_from, valid_to, is_current, company_name, country, last_contact_at "
        "FROM dim.companies ORDER BY company_id, valid_from",
    ) == [
        ("c1", S1, S2, False, "Acme", "DE", dt.datetime(2025, 11, 1, 8, 0)),
        ("c1", S2, None, True, "Acme Corp", "DE", dt.datetime(2025, 11, 1, 8, 0)),
        ("c2", S1, S3, False, "Beta", "FR", None),
        ("c2", S3, None, True, "Beta", "IT", None),
        ("c3", S1, S2, False, "Gamma", "US", None),
        ("c3", S3, None, True, "Gamma", "US", None),
    ]


def test_a_bad_file_ends_up_in_quarantine_with_its_report_and_an_alert(
    resources: Resources, warehouse: DuckDBWarehouse, readiness: RecordingReadiness
) -> None:
    bad = "company_id,name,country\nc1,Acme,DE\n"  # no industry_tag, no last_contact_at
    upload(resources, "crm_2025-11-30.csv", bad)

    result = resources.stage_crm_blob("crm_2025-11-30.csv")

    assert result.status == "rejected"
    quarantine = resources.settings.quarantine_container
    blobs: BlobStore = resources.blobs
    assert sorted(b.name for b in blobs.list(quarantine)) == sorted([result.quarantine_blob, result.report_blob])
    assert result.quarantine_blob is not None and result.report_blob is not None
    assert blobs.read_bytes(quarantine, result.quarantine_blob) == bad.encode()
    report = json.loads(blobs.read_bytes(quarantine, result.report_blob))
    assert report["source_blob"] == "crm_2025-11-30.csv"
    assert report["file_error"]["reason"] == "missing_columns"
    assert "industry_tag" in report["file_error"]["message"]
    alerts = resources.alerts
    assert isinstance(alerts, RecordingAlertSink)
    assert [(a.severity, a.date) for a in alerts.alerts] == [("error", S3)]
    assert table(warehouse, "SELECT COUNT(*) FROM stg.crm_companies") == [(0,)]
    assert table(warehouse, "SELECT report_blob, status FROM ops.quarantined_files") == [
        (result.report_blob, "rejected")
    ]
    assert readiness.marks == []


def test_rejected_rows_are_reported_with_row_column_value_and_reason(resources: Resources) -> None:
    rows = "".join(f"c{i},Name {i},DE,x,\n" for i in range(1, 40))
    upload(resources, "crm_2025-11-30.csv", HEADER + rows + "c40,Bad,DE,x,31/12/2025\n")

    result = resources.stage_crm_blob("crm_2025-11-30.csv")

    assert (result.status, result.rows_staged, result.rejected_rows) == ("staged", 39, 1)
    assert result.report_blob is not None
    report = json.loads(resources.blobs.read_bytes(resources.settings.quarantine_container, result.report_blob))
    assert report["status"] == "partial"
    assert report["row_errors"] == [
        {"row": 41, "column": "last_contact_at", "value": "31/12/2025", "reason": "not an ISO-8601 timestamp"}
    ]


def test_delivering_the_same_blob_twice_gives_identical_tables(
    resources: Resources, warehouse: DuckDBWarehouse, readiness: RecordingReadiness
) -> None:
    upload(resources, "crm_2025-11-29.csv", SNAPSHOTS[S2])
    more = "".join(f"m{i},More {i},DE,x,\n" for i in range(30))
    upload(resources, "crm_2025-11-30.csv", SNAPSHOTS[S3] + more + "c9,Bad,DE,x,never\n")  # one rejected row
    resources.stage_crm_blob("crm_2025-11-29.csv")
    first = resources.stage_crm_blob("crm_2025-11-30.csv")
    before = all_tables(warehouse)
    quarantined_before = sorted(b.name for b in resources.blobs.list(resources.settings.quarantine_container))

    again = resources.stage_crm_blob("crm_2025-11-30.csv")

    assert again.status == "unchanged" and again.version == first.version
    assert all_tables(warehouse) == before
    assert sorted(b.name for b in resources.blobs.list(resources.settings.quarantine_container)) == quarantined_before
    assert first.status == "staged" and first.rejected_rows == 1
    assert readiness.marks[-2:] == [(S3, "crm", first.version, 33)] * 2


def test_a_corrected_file_replaces_a_rejected_one_for_the_same_date(
    resources: Resources, warehouse: DuckDBWarehouse, readiness: RecordingReadiness
) -> None:
    upload(resources, "crm_2025-11-30.csv", b"\xff\xfe" + SNAPSHOTS[S3].encode("utf-16-le"))
    assert resources.stage_crm_blob("crm_2025-11-30.csv").status == "rejected"

    upload(resources, "crm_2025-11-30.csv", SNAPSHOTS[S3])
    result = resources.stage_crm_blob("crm_2025-11-30.csv")

    assert result.status == "staged"
    assert table(warehouse, "SELECT COUNT(*) FROM stg.crm_companies WHERE snapshot_date = '2025-11-30'") == [(3,)]
    assert readiness.marks == [(S3, "crm", result.version, 3)]
