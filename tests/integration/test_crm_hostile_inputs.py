"""Hostile CRM inputs against Azurite + DuckDB: each is loaded verbatim as data or rejected with a
clear report, and nothing else happens (no other table, blob or alert appears or changes).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from shared.adapters.blob_store import BlobInfo
from shared.adapters.warehouse.duckdb_engine import DuckDBWarehouse
from shared.services.alerts import RecordingAlertSink
from shared.services.crm_staging import StagingResult, stage_crm_snapshot
from shared.services.readiness import MarkResult
from shared.settings import Settings
from shared.wiring import Resources

pytestmark = pytest.mark.integration

HEADER = "company_id,name,country,industry_tag,last_contact_at\n"
FILLER = "".join(f"f{i},Filler {i},DE,x,\n" for i in range(40))  # keeps one bad row under the 5 % threshold
INJECTION = "'); DROP TABLE x;--"
D = dt.date(2025, 11, 30)


class RecordingReadiness:
    def __init__(self) -> None:
        self.marks: list[tuple[dt.date, str, str, int]] = []

    def mark_input_present(
        self, activity_date: dt.date, input_name: str, version: str, rows: int, now: dt.datetime, run_id: str
    ) -> MarkResult:
        self.marks.append((activity_date, input_name, version, rows))
        return MarkResult(activity_date, True, False)


@pytest.fixture
def resources(
    storage_settings: Settings, make_resources: Callable[..., Resources], warehouse: DuckDBWarehouse
) -> Resources:
    return make_resources(storage_settings, warehouse=warehouse, readiness=RecordingReadiness())


def deliver(resources: Resources, name: str, content: str | bytes) -> StagingResult:
    data = content.encode("utf-8") if isinstance(content, str) else content
    resources.blobs.write(resources.settings.crm_container, name, data)
    return resources.stage_crm_blob(name)


def tables(warehouse: DuckDBWarehouse) -> list[tuple[str, str]]:
    rows = warehouse.run_sql("SELECT TABLE_SCHEMA AS s, TABLE_NAME AS t FROM INFORMATION_SCHEMA.TABLES")
    return sorted((r["s"], r["t"]) for r in rows)


def report_of(resources: Resources, result: StagingResult) -> dict[str, Any]:
    assert result.report_blob is not None
    return json.loads(resources.blobs.read_bytes(resources.settings.quarantine_container, result.report_blob))


def quarantine_names(resources: Resources) -> list[str]:
    return sorted(b.name for b in resources.blobs.list(resources.settings.quarantine_container))


def alerts_of(resources: Resources) -> list[tuple[str, str]]:
    sink = resources.alerts
    assert isinstance(sink, RecordingAlertSink)
    return [(a.severity, a.title) for a in sink.alerts]


def test_sql_in_values_is_loaded_verbatim_and_executes_nothing(
    resources: Resources, warehouse: DuckDBWarehouse
) -> None:
    before = tables(warehouse)
    sql_id = "x'; DELETE FROM stg.crm_companies;--"
    result = deliver(resources, "crm_2025-11-30.csv", HEADER + f'"{sql_id}","{INJECTION}",DE,"1); DROP--",\n')

    assert result.status == "staged"
    assert warehouse.run_sql("SELECT company_id, company_name, industry_tag FROM stg.crm_companies") == [
        {"company_id": sql_id, "company_name": INJECTION, "industry_tag": "1); DROP--"}
    ]
    assert warehouse.run_sql("SELECT company_name FROM dim.companies") == [{"company_name": INJECTION}]
    assert tables(warehouse) == before
    assert quarantine_names(resources) == [] and alerts_of(resources) == []


def test_a_half_megabyte_field_is_rejected_as_too_long_with_a_truncated_value_in_the_report(
    resources: Resources, warehouse: DuckDBWarehouse
) -> None:
    huge = "A" * 500_000  # far beyond the column, within CRM_MAX_LINE_BYTES (1 MiB): the row only
    result = deliver(resources, "crm_2025-11-30.csv", HEADER + FILLER + f"big,{huge},DE,x,\n")

    assert (result.status, result.rows_staged, result.rejected_rows) == ("staged", 40, 1)
    (error,) = report_of(resources, result)["row_errors"]
    assert (error["row"], error["column"], error["reason"]) == (42, "name", "too long: 500000 > 400 characters")
    assert len(error["value"]) <= 201
    assert warehouse.run_sql("SELECT COUNT(*) AS n FROM stg.crm_companies WHERE company_id = 'big'") == [{"n": 0}]
    assert alerts_of(resources) == [("warning", "CRM rows rejected")]


def test_a_half_megabyte_value_in_an_ignored_column_loads_the_row(
    resources: Resources, warehouse: DuckDBWarehouse
) -> None:
    text = "company_id,name,country,industry_tag,last_contact_at,notes\n" + "c1,Acme,DE,x,," + "n" * 500_000 + "\n"
    result = deliver(resources, "crm_2025-11-30.csv", text)
    assert result.status == "staged"
    assert warehouse.run_sql("SELECT company_id, company_name FROM stg.crm_companies") == [
        {"company_id": "c1", "company_name": "Acme"}
    ]


def test_control_characters_in_values_reject_the_row_and_are_reported(resources: Resources) -> None:
    result = deliver(resources, "crm_2025-11-30.csv", HEADER + FILLER + "nul,Ac\x00me,DE,x,\n")
    assert (result.status, result.rejected_rows) == ("staged", 1)
    (error,) = report_of(resources, result)["row_errors"]
    assert (error["column"], error["value"], error["reason"]) == ("name", "Ac\x00me", "contains a control character")


def test_a_non_utf8_file_is_rejected_whole_with_the_byte_offset(
    resources: Resources, warehouse: DuckDBWarehouse
) -> None:
    data = (HEADER + "c1,Acme,DE,x,\n").encode("utf-8") + "c2,Société,FR,x,\n".encode("cp1252")
    result = deliver(resources, "crm_2025-11-30.csv", data)

    assert result.status == "rejected"
    error = report_of(resources, result)["file_error"]
    assert error["reason"] == "invalid_utf8"
    assert error["byte_offset"] == len(HEADER) + len("c1,Acme,DE,x,\n") + len("c2,Soci")
    assert warehouse.run_sql("SELECT COUNT(*) AS n FROM stg.crm_companies") == [{"n": 0}]
    assert alerts_of(resources) == [("error", "CRM file rejected")]


@pytest.mark.parametrize("name", ["..\\..\\crm_2025-11-30.csv", "in/..%2F..%2Fcrm_2025-11-30.csv"])
def test_a_blob_name_with_parent_references_is_data_and_never_a_path(
    resources: Resources, warehouse: DuckDBWarehouse, name: str
) -> None:
    result = deliver(resources, name, HEADER + FILLER + "bad,B,DE,x,never\n")

    assert result.status == "staged"
    assert warehouse.run_sql("SELECT DISTINCT source_blob FROM stg.crm_companies") == [{"source_blob": name}]
    names = quarantine_names(resources)
    assert names == sorted([result.quarantine_blob, result.report_blob])
    assert all(n.startswith("2025-11-30/") and ".." not in n and "\\" not in n and "%" not in n for n in names)


@pytest.mark.parametrize("name", ["crm_2025-11-30\x01.csv", "crm_2025-11-30\n.csv"])
def test_a_blob_name_with_control_characters_is_rejected_into_a_safely_named_quarantine(
    resources: Resources, warehouse: DuckDBWarehouse, name: str
) -> None:
    result = deliver(resources, name, HEADER + "c1,Acme,DE,x,\n")

    assert result.status == "rejected"
    assert report_of(resources, result)["file_error"]["reason"] == "unsafe_blob_name"
    assert report_of(resources, result)["source_blob"] == name  # the report keeps it, JSON-escaped
    assert all(n.isprintable() for n in quarantine_names(resources))
    assert warehouse.run_sql("SELECT COUNT(*) AS n FROM stg.crm_companies") == [{"n": 0}]


def test_a_literal_dot_dot_slash_name_never_reaches_a_path(storage_settings: Settings) -> None:
    """Storage clients normalise ``../`` out of URLs, so such a blob cannot be uploaded to Azurite;
    the trigger could still hand us the name. The quarantine copy is named from a safe form of it."""
    copies: list[str] = []

    class OneBlob:
        def info(self, container: str, name: str) -> Any:
            return BlobInfo(container, name, "etag", 1, None, None, {})

        def iter_chunks(
            self, container: str, name: str, chunk_size: int = 0, etag: str | None = None
        ) -> Iterator[bytes]:
            yield (HEADER + "c1,Acme,DE,x,\n").encode()

        def copy(self, src_container: str, src_name: str, dst_container: str, dst_name: str) -> Any:
            copies.append(dst_name)

        def write(self, container: str, name: str, data: Any, **_: Any) -> Any:
            copies.append(name)
            b"".join(data)

    warehouse = DuckDBWarehouse(":memory:")
    warehouse.apply_schema()
    result = stage_crm_snapshot(
        "../../../etc/crm_latest.csv",
        settings=storage_settings,
        blobs=OneBlob(),
        warehouse=warehouse,
        readiness=RecordingReadiness(),
        alerts=RecordingAlertSink(),
    )
    assert result.status == "rejected"  # no date in the name
    assert all(n.startswith("undated/") and "/.." not in n and n.count("/") == 1 for n in copies)


def test_a_blob_overwritten_while_it_is_read_is_superseded_and_the_new_version_is_its_own_run(
    resources: Resources, warehouse: DuckDBWarehouse
) -> None:
    """Staging reads one version: the ETag it saw first. An overwrite mid-read ends that run as
    superseded (nothing staged, nothing alerted); the new version's own trigger stages it."""
    container = resources.settings.crm_container
    first = HEADER + "".join(f"old{i},Old {i},DE,x,\n" for i in range(2000))
    resources.blobs.write(container, "crm_2025-11-30.csv", first.encode())
    real_chunks = resources.blobs.iter_chunks

    def overwrite_after_first_chunk(*args: Any, **kwargs: Any) -> Iterator[bytes]:
        for index, chunk in enumerate(real_chunks(*args, **{**kwargs, "chunk_size": 1024})):
            yield chunk
            if index == 0:
                resources.blobs.write(container, "crm_2025-11-30.csv", (HEADER + "new1,New,FR,y,\n").encode())

    resources.blobs.iter_chunks = overwrite_after_first_chunk  # type: ignore[method-assign]
    result = resources.stage_crm_blob("crm_2025-11-30.csv")
    resources.blobs.iter_chunks = real_chunks  # type: ignore[method-assign]

    assert result.status == "superseded" and result.rows_staged == 0
    assert warehouse.run_sql("SELECT COUNT(*) AS n FROM stg.crm_companies") == [{"n": 0}]
    assert warehouse.run_sql("SELECT COUNT(*) AS n FROM stg.crm_companies_landing") == [{"n": 0}]
    assert warehouse.run_sql("SELECT status FROM ops.crm_blob_versions") == [{"status": "superseded"}]
    assert alerts_of(resources) == []

    second = resources.stage_crm_blob("crm_2025-11-30.csv")  # the new ETag's own trigger
    assert (second.status, second.rows_staged) == ("staged", 1)
    assert warehouse.run_sql("SELECT company_id FROM stg.crm_companies") == [{"company_id": "new1"}]
