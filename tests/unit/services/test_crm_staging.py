"""CRM staging service with an in-memory blob store, a recording readiness gate and DuckDB."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import pytest

from shared.adapters.blob_store import BlobInfo
from shared.adapters.warehouse.duckdb_engine import DuckDBWarehouse
from shared.errors import BuildError, UpstreamUnavailable
from shared.rules import crm_fast
from shared.services import crm_staging
from shared.services.alerts import RecordingAlertSink
from shared.services.crm_staging import (
    StagingResult,
    quarantine_names,
    safe_blob_name,
    snapshot_date_from_name,
    stage_crm_blob,
    stage_crm_snapshot,
)
from shared.services.readiness import MarkResult
from shared.settings import Settings
from shared.wiring import Resources

HEADER = "company_id,name,country,industry_tag,last_contact_at\n"
NOW = dt.datetime(2025, 12, 1, 6, 0)


class MemoryBlobs:
    """The three BlobStore calls staging makes, over a dict; reads come in small chunks."""

    def __init__(self, chunk_size: int = 16) -> None:
        self.blobs: dict[tuple[str, str], bytes] = {}
        self.chunk_size = chunk_size
        self.fail_reading_after: int | None = None

    def put(self, container: str, name: str, data: bytes) -> None:
        self.blobs[(container, name)] = data

    def info(self, container: str, name: str) -> BlobInfo | None:
        return self._info(container, name) if (container, name) in self.blobs else None

    def iter_chunks(
        self, container: str, name: str, chunk_size: int = 4 * 1024 * 1024, *, etag: str | None = None
    ) -> Iterator[bytes]:
        data = self.blobs[(container, name)]
        for start in range(0, len(data), self.chunk_size):
            if self.fail_reading_after is not None and start >= self.fail_reading_after:
                raise UpstreamUnavailable("read failed")
            yield data[start : start + self.chunk_size]

    def write(self, container: str, name: str, data: bytes | Iterable[bytes], **_: Any) -> BlobInfo:
        self.blobs[(container, name)] = data if isinstance(data, bytes) else b"".join(data)
        return self._info(container, name)

    def copy(self, src_container: str, src_name: str, dst_container: str, dst_name: str) -> BlobInfo:
        self.blobs[(dst_container, dst_name)] = self.blobs[(src_container, src_name)]
        return self._info(dst_container, dst_name)

    def names(self, container: str) -> list[str]:
        return sorted(n for c, n in self.blobs if c == container)

    def _info(self, container: str, name: str) -> BlobInfo:
        return BlobInfo(container, name, "etag", len(self.blobs[(container, name)]), None, NOW, {})


class RecordingReadiness:
    def __init__(self) -> None:
        self.marks: list[tuple[dt.date, str, str, int]] = []

    def mark_input_present(
        self, activity_date: dt.date, input_name: str, version: str, rows: int, now: dt.datetime, run_id: str
    ) -> MarkResult:
        changed = not self.marks or self.marks[-1][2] != version
        self.marks.append((activity_date, input_name, version, rows))
        return MarkResult(activity_date, changed, False)


class FailingWarehouse(DuckDBWarehouse):
    """Fails the named SQL file, to show what a failure half way leaves behind."""

    fail_on: str | None = None

    def run(self, name: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        if name == self.fail_on:
            raise BuildError(f"injected failure in {name}")
        return super().run(name, params)


@pytest.fixture
def settings() -> Settings:
    return Settings(crm_reject_threshold=0.25)


@pytest.fixture
def warehouse() -> Iterator[FailingWarehouse]:
    engine = FailingWarehouse(":memory:")
    engine.apply_schema()
    yield engine
    engine.close()


@pytest.fixture
def blobs() -> MemoryBlobs:
    return MemoryBlobs()


@pytest.fixture
def readiness() -> RecordingReadiness:
    return RecordingReadiness()


@pytest.fixture
def alerts() -> RecordingAlertSink:
    return RecordingAlertSink()


@pytest.fixture
def stage(
    settings: Settings,
    blobs: MemoryBlobs,
    warehouse: FailingWarehouse,
    readiness: RecordingReadiness,
    alerts: RecordingAlertSink,
) -> Any:
    def run(name: str, content: str | bytes | None = None) -> StagingResult:
        if content is not None:
            blobs.put(settings.crm_container, name, content.encode("utf-8") if isinstance(content, str) else content)
        return stage_crm_snapshot(
            name,
            settings=settings,
            blobs=blobs,
            warehouse=warehouse,
            readiness=readiness,
            alerts=alerts,
            clock=lambda: NOW,
        )

    return run


def staged_rows(warehouse: DuckDBWarehouse) -> list[tuple[Any, ...]]:
    rows = warehouse.run_sql(
        "SELECT snapshot_date, company_id, company_name, country, source_row FROM stg.crm_companies "
        "ORDER BY snapshot_date, company_id"
    )
    return [tuple(r.values()) for r in rows]


def dim_rows(warehouse: DuckDBWarehouse) -> list[tuple[Any, ...]]:
    rows = warehouse.run_sql(
        "SELECT company_id, valid_from, valid_to, company_name, country FROM dim.companies "
        "ORDER BY company_id, valid_from"
    )
    return [tuple(r.values()) for r in rows]


def landing_count(warehouse: DuckDBWarehouse) -> int:
    return int(warehouse.run_sql("SELECT COUNT(*) AS n FROM stg.crm_companies_landing")[0]["n"])


def report(blobs: MemoryBlobs, settings: Settings, result: StagingResult) -> dict[str, Any]:
    assert result.report_blob is not None
    return json.loads(blobs.blobs[(settings.quarantine_container, result.report_blob)])


D1 = dt.date(2025, 11, 30)
GOOD = HEADER + "c1,Acme,DE,saas,2025-11-29T10:00:00+01:00\nc2,Beta,FR,,\n"


# ---- staging ---------------------------------------------------------------------------------
def test_good_file_is_staged_dims_built_and_date_marked_present(
    stage: Any, warehouse: DuckDBWarehouse, readiness: RecordingReadiness, alerts: RecordingAlertSink
) -> None:
    result = stage("crm_2025-11-30.csv", GOOD)

    assert (result.status, result.snapshot_date, result.rows_staged) == ("staged", D1, 2)
    assert result.version == hashlib.sha256(GOOD.encode()).hexdigest()
    assert staged_rows(warehouse) == [(D1, "c1", "Acme", "DE", 2), (D1, "c2", "Beta", "FR", 3)]
    assert dim_rows(warehouse) == [("c1", D1, None, "Acme", "DE"), ("c2", D1, None, "Beta", "FR")]
    assert readiness.marks == [(D1, "crm", result.version, 2)]
    assert alerts.alerts == []
    assert landing_count(warehouse) == 0
    snapshot = warehouse.run_sql("SELECT source_blob, content_hash, row_count FROM stg.crm_snapshots")
    assert snapshot == [{"source_blob": "crm_2025-11-30.csv", "content_hash": result.version, "row_count": 2}]


def test_the_run_is_recorded_in_ops(stage: Any, warehouse: DuckDBWarehouse) -> None:
    result = stage("crm_2025-11-30.csv", GOOD)
    runs = warehouse.run_sql("SELECT step, run_date, status, rows_in, rows_out, trigger_name FROM ops.pipeline_runs")
    assert runs == [
        {
            "step": "crm_staging",
            "run_date": D1,
            "status": "succeeded",
            "rows_in": 2,
            "rows_out": result.rows_staged,
            "trigger_name": "crm_snapshot_arrived",
        }
    ]


def test_duplicate_company_ids_keep_the_last_occurrence_and_are_counted(stage: Any, warehouse: DuckDBWarehouse) -> None:
    result = stage("crm_2025-11-30.csv", HEADER + "c1,Old,DE,,\nc2,B,FR,,\nc1,Middle,DE,,\nc1,New,AT,,\n")
    assert (result.rows_staged, result.duplicate_rows) == (2, 2)
    assert staged_rows(warehouse) == [(D1, "c1", "New", "AT", 5), (D1, "c2", "B", "FR", 3)]
    assert warehouse.run_sql("SELECT duplicate_row_count FROM stg.crm_snapshots") == [{"duplicate_row_count": 2}]


def test_same_content_again_changes_nothing_and_marks_the_same_version(
    stage: Any, warehouse: DuckDBWarehouse, readiness: RecordingReadiness
) -> None:
    first = stage("crm_2025-11-30.csv", GOOD)
    tables_before = (staged_rows(warehouse), warehouse.run_sql("SELECT * FROM dim.companies"))
    snapshots_before = warehouse.run_sql("SELECT * FROM stg.crm_snapshots")

    second = stage("crm_2025-11-30.csv")

    assert second.status == "unchanged" and second.version == first.version
    assert (staged_rows(warehouse), warehouse.run_sql("SELECT * FROM dim.companies")) == tables_before
    assert warehouse.run_sql("SELECT * FROM stg.crm_snapshots") == snapshots_before
    assert readiness.marks == [(D1, "crm", first.version, 2)] * 2
    assert landing_count(warehouse) == 0


def test_corrected_file_for_the_same_date_replaces_the_snapshot_and_marks_a_new_version(
    stage: Any, warehouse: DuckDBWarehouse, readiness: RecordingReadiness
) -> None:
    first = stage("crm_2025-11-30.csv", GOOD)
    second = stage("crm_2025-11-30_fixed.csv", HEADER + "c1,Acme AG,DE,saas,\nc3,Gamma,US,,\n")

    assert second.status == "staged" and second.version != first.version
    assert staged_rows(warehouse) == [(D1, "c1", "Acme AG", "DE", 2), (D1, "c3", "Gamma", "US", 3)]
    assert dim_rows(warehouse) == [("c1", D1, None, "Acme AG", "DE"), ("c3", D1, None, "Gamma", "US")]
    assert [m[2] for m in readiness.marks] == [first.version, second.version]


# ---- rejections ------------------------------------------------------------------------------
def test_file_without_a_date_in_its_name_is_quarantined_with_a_report_and_an_error_alert(
    stage: Any,
    settings: Settings,
    blobs: MemoryBlobs,
    warehouse: DuckDBWarehouse,
    alerts: RecordingAlertSink,
    readiness: RecordingReadiness,
) -> None:
    result = stage("crm_latest.csv", GOOD)

    assert (result.status, result.snapshot_date) == ("rejected", None)
    assert blobs.names(settings.quarantine_container) == [result.quarantine_blob, result.report_blob]
    assert result.quarantine_blob is not None and result.quarantine_blob.startswith("undated/")
    assert blobs.blobs[(settings.quarantine_container, result.quarantine_blob)] == GOOD.encode()
    assert report(blobs, settings, result)["file_error"]["reason"] == "no_date_in_name"
    assert [(a.severity, a.title) for a in alerts.alerts] == [("error", "CRM file rejected")]
    assert staged_rows(warehouse) == [] and readiness.marks == []
    quarantined = warehouse.run_sql("SELECT source_blob, status, snapshot_date FROM ops.quarantined_files")
    assert quarantined == [{"source_blob": "crm_latest.csv", "status": "rejected", "snapshot_date": None}]
    assert warehouse.run_sql("SELECT status FROM ops.pipeline_runs") == [{"status": "rejected"}]


def test_a_date_that_does_not_exist_is_no_date(stage: Any) -> None:
    result = stage("crm_2025-02-30.csv", GOOD)
    assert result.status == "rejected" and result.reason is not None and "no valid snapshot date" in result.reason


def test_too_many_rejected_rows_reject_the_file_and_keep_the_previous_snapshot(
    stage: Any,
    settings: Settings,
    blobs: MemoryBlobs,
    warehouse: DuckDBWarehouse,
    alerts: RecordingAlertSink,
    readiness: RecordingReadiness,
) -> None:
    stage("crm_2025-11-30.csv", GOOD)
    before = (staged_rows(warehouse), dim_rows(warehouse))

    # 2 of 4 rows rejected: 50 % > the 25 % threshold of these tests.
    bad = stage("crm_2025-11-30_v2.csv", HEADER + ",NoId,DE,,\nc2,B,FR,,soon\nc3,C,DE,,\nc4,D,DE,,\n")

    assert bad.status == "rejected" and bad.rejected_rows == 2
    assert (staged_rows(warehouse), dim_rows(warehouse)) == before
    assert len(readiness.marks) == 1
    assert landing_count(warehouse) == 0
    body = report(blobs, settings, bad)
    assert body["file_error"]["reason"] == "too_many_rejected_rows"
    assert body["counts"] == {"data_rows": 4, "valid_rows": 2, "rejected_rows": 2, "blank_lines": 0}
    assert body["row_errors"] == [
        {"row": 2, "column": "company_id", "value": "", "reason": "empty company_id"},
        {"row": 3, "column": "last_contact_at", "value": "soon", "reason": "not an ISO-8601 timestamp"},
    ]
    assert alerts.alerts[-1].severity == "error"


def test_some_rejected_rows_are_staged_without_them_quarantined_and_alerted_as_a_warning(
    stage: Any, settings: Settings, blobs: MemoryBlobs, warehouse: DuckDBWarehouse, alerts: RecordingAlertSink
) -> None:
    result = stage("crm_2025-11-30.csv", HEADER + "c1,A,DE,,\nc2,B,DE,,\nc3,C,DE,,\nc4,D,DE,,yesterday\n")

    assert (result.status, result.rows_staged, result.rejected_rows) == ("staged", 3, 1)
    assert [r[1] for r in staged_rows(warehouse)] == ["c1", "c2", "c3"]
    body = report(blobs, settings, result)
    assert body["status"] == "partial" and body["file_error"] is None
    assert body["row_errors"] == [
        {"row": 5, "column": "last_contact_at", "value": "yesterday", "reason": "not an ISO-8601 timestamp"}
    ]
    assert [(a.severity, a.title) for a in alerts.alerts] == [("warning", "CRM rows rejected")]
    assert warehouse.run_sql("SELECT status, rejected_row_count FROM ops.quarantined_files") == [
        {"status": "partial", "rejected_row_count": 1}
    ]
    assert warehouse.run_sql("SELECT rejected_row_count FROM stg.crm_snapshots") == [{"rejected_row_count": 1}]


def test_extra_columns_are_named_in_the_report(stage: Any, settings: Settings, blobs: MemoryBlobs) -> None:
    text = "company_id,name,country,industry_tag,last_contact_at,owner\nc1,A,DE,,,bob\nc2,B,DE,,,al\n"
    result = stage("crm_2025-11-30.csv", text + "c3,C,DE,,x,al\nc4,D,DE,,,al\n")
    assert report(blobs, settings, result)["extra_columns_ignored"] == ["owner"]
    assert result.extra_columns == ("owner",)


def test_invalid_utf8_rejects_the_file_with_the_offset_in_the_report(
    stage: Any, settings: Settings, blobs: MemoryBlobs, warehouse: DuckDBWarehouse
) -> None:
    data = (HEADER + "c1,A,DE,,\n").encode() + "c2,Müller,DE,,\n".encode("latin-1")
    result = stage("crm_2025-11-30.csv", data)

    error = report(blobs, settings, result)["file_error"]
    assert error["reason"] == "invalid_utf8" and error["byte_offset"] == len(HEADER) + 10 + 4
    assert result.version == hashlib.sha256(data).hexdigest()  # the whole file, though parsing stopped early
    assert staged_rows(warehouse) == [] and landing_count(warehouse) == 0


def test_redelivered_rejected_file_leaves_one_quarantine_row_on_the_same_blobs(
    stage: Any, settings: Settings, blobs: MemoryBlobs, warehouse: DuckDBWarehouse
) -> None:
    first = stage("crm_nodate.csv", GOOD)
    second = stage("crm_nodate.csv")
    assert (first.quarantine_blob, first.report_blob) == (second.quarantine_blob, second.report_blob)
    assert len(blobs.names(settings.quarantine_container)) == 2
    assert warehouse.run_sql("SELECT COUNT(*) AS n FROM ops.quarantined_files") == [{"n": 1}]


# ---- failures --------------------------------------------------------------------------------
@pytest.mark.parametrize("failing_file", ["dim/companies__scd2", "stg/crm_companies__load"])
def test_a_failure_during_the_swap_leaves_the_previous_snapshot_intact(
    failing_file: str, stage: Any, warehouse: FailingWarehouse, readiness: RecordingReadiness
) -> None:
    stage("crm_2025-11-30.csv", GOOD)
    before = (staged_rows(warehouse), dim_rows(warehouse), warehouse.run_sql("SELECT * FROM stg.crm_snapshots"))

    warehouse.fail_on = failing_file
    with pytest.raises(BuildError):
        stage("crm_2025-11-30.csv", HEADER + "c1,Renamed,DE,,\nc9,New,US,,\n")

    after = (staged_rows(warehouse), dim_rows(warehouse), warehouse.run_sql("SELECT * FROM stg.crm_snapshots"))
    assert after == before
    assert landing_count(warehouse) == 0
    assert len(readiness.marks) == 1
    assert warehouse.run_sql("SELECT status, error_type FROM ops.pipeline_runs ORDER BY started_at")[-1] == {
        "status": "failed",
        "error_type": "BuildError",
    }
    # The host retries; the retry stages the corrected file.
    warehouse.fail_on = None
    assert stage("crm_2025-11-30.csv").status == "staged"
    assert [r[2] for r in staged_rows(warehouse)] == ["Renamed", "New"]


def test_a_read_error_is_raised_for_the_host_to_retry_and_nothing_is_left_in_landing(
    stage: Any, blobs: MemoryBlobs, warehouse: DuckDBWarehouse, alerts: RecordingAlertSink
) -> None:
    blobs.fail_reading_after = 32
    with pytest.raises(UpstreamUnavailable):
        stage("crm_2025-11-30.csv", GOOD * 3)
    assert landing_count(warehouse) == 0 and staged_rows(warehouse) == [] and alerts.alerts == []


def test_the_services_entry_point_uses_the_container(
    settings: Settings, blobs: MemoryBlobs, warehouse: DuckDBWarehouse, readiness: RecordingReadiness
) -> None:
    blobs.put(settings.crm_container, "crm_2025-11-30.csv", GOOD.encode())
    resources = Resources(settings, warehouse=warehouse, blobs=blobs, readiness=readiness, alerts=RecordingAlertSink())
    assert stage_crm_blob("crm_2025-11-30.csv", resources).status == "staged"
    assert resources.stage_crm_blob("crm_2025-11-30.csv").status == "unchanged"


# ---- names -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("crm_2025-11-30.csv", dt.date(2025, 11, 30)),
        ("exports/2025/crm-2025-01-02-final.csv", dt.date(2025, 1, 2)),
        ("crm_2025-13-01.csv", None),
        ("crm_latest.csv", None),
    ],
)
def test_snapshot_date_comes_from_the_blob_name(name: str, expected: dt.date | None) -> None:
    assert snapshot_date_from_name(name, Settings().crm_date_pattern) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("crm_2025-11-30.csv", "crm_2025-11-30.csv"),
        ("../../etc/passwd", "etc_passwd"),
        ("a/../b\x00c\n.csv", "a_b_c_.csv"),
        ("..", "unnamed"),
        ("Ünïcødé name.csv", "n_c_d_name.csv"),
    ],
)
def test_quarantine_names_are_safe_path_segments(name: str, expected: str) -> None:
    assert safe_blob_name(name) == expected
    copy_name, report_name = quarantine_names(name, None, "ab" * 32)
    assert copy_name == f"undated/abababababababab-{expected}" and report_name == copy_name + ".report.json"
    assert ".." not in copy_name and "\x00" not in copy_name


def test_blob_name_with_control_characters_is_rejected_under_a_safe_name(
    stage: Any, settings: Settings, blobs: MemoryBlobs, warehouse: DuckDBWarehouse
) -> None:
    result = stage("crm_2025-11-30\x07.csv", GOOD)
    assert result.status == "rejected"
    assert report(blobs, settings, result)["file_error"]["reason"] == "unsafe_blob_name"
    assert all("\x07" not in name for name in blobs.names(settings.quarantine_container))
    assert staged_rows(warehouse) == []


# ---- what a rejection says (issue 16) ---------------------------------------------------------------
def test_a_rejected_file_names_the_cause_in_its_reason_its_alert_and_its_run(
    stage: Any, warehouse: DuckDBWarehouse, alerts: RecordingAlertSink
) -> None:
    result = stage("crm_2025-11-30.csv", HEADER + "C1," + "n" * 401 + ",DE,saas,\n")

    assert result.status == "rejected"
    assert result.reason == "1 of 1 rows rejected: name longer than 400 characters (above the threshold of 25.0%)"
    [alert] = alerts.alerts
    assert "1 of 1 rows rejected: name longer than 400 characters" in alert.message
    [run] = warehouse.run_sql("SELECT status, error_message FROM ops.pipeline_runs WHERE step = 'crm_staging'")
    assert run == {"status": "rejected", "error_message": result.reason}
    [quarantined] = warehouse.run_sql("SELECT reason FROM ops.quarantined_files")
    assert quarantined["reason"] == result.reason


def test_rejection_causes_are_counted_commonest_first(stage: Any, alerts: RecordingAlertSink) -> None:
    rows = [
        "C1,ok,DE,saas,yesterday",
        "C2,ok,DE,saas,soon",
        ",ok,DE,saas,",
        *[f"C{i},ok,DE,saas," for i in range(3, 13)],
    ]

    result = stage("crm_2025-11-30.csv", HEADER + "\n".join(rows) + "\n")

    assert result.status == "staged"
    assert alerts.alerts[0].message.startswith(
        "3 of 13 rows rejected: last_contact_at not an ISO-8601 timestamp (2 rows); empty company_id (1 rows); "
    )


def test_ignored_extra_columns_are_recorded_in_ops(stage: Any, warehouse: DuckDBWarehouse) -> None:
    result = stage(
        "crm_2025-11-30.csv", "company_id,name,country,industry_tag,last_contact_at,owner,tier\nC1,a,DE,x,\n"
    )

    assert result.extra_columns == ("owner", "tier")
    [row] = warehouse.run_sql(
        "SELECT source_blob, content_hash, snapshot_date, column_names FROM ops.crm_ignored_columns"
    )
    assert row == {
        "source_blob": "crm_2025-11-30.csv",
        "content_hash": result.version,
        "snapshot_date": dt.date(2025, 11, 30),
        "column_names": "owner, tier",
    }


def test_a_file_the_fast_path_refuses_late_is_staged_by_the_exact_path_alone(
    stage: Any, warehouse: DuckDBWarehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small Arrow blocks: many batches land before the blank line near the end refuses the file.
    monkeypatch.setattr(crm_fast, "_BLOCK_BYTES", 256)
    monkeypatch.setattr(crm_fast, "_MAX_FAST_LINE_BYTES", 128)
    lines = [f"c{i},Name {i},DE,saas,2025-11-29T10:00:00Z\n" for i in range(200)]
    result = stage("crm_2025-11-30.csv", HEADER + "".join(lines[:150]) + "\n" + "".join(lines[150:]))

    assert (result.status, result.data_rows, result.rows_staged, result.rejected_rows) == ("staged", 200, 200, 0)
    rows = staged_rows(warehouse)
    assert [(r[1], r[4]) for r in rows] == sorted(
        [(f"c{i}", i + 2 if i < 150 else i + 3) for i in range(200)]  # the blank line is record 152
    )
    assert landing_count(warehouse) == 0


def test_a_clean_file_is_staged_by_the_fast_path(
    stage: Any, warehouse: DuckDBWarehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    def exact_path_not_expected(*_: Any, **__: Any) -> None:
        raise AssertionError("the exact path read a clean file")

    monkeypatch.setattr(crm_staging, "CrmCsvParser", exact_path_not_expected)
    result = stage("crm_2025-11-30.csv", GOOD)

    assert (result.status, result.rows_staged) == ("staged", 2)
    assert staged_rows(warehouse) == [(D1, "c1", "Acme", "DE", 2), (D1, "c2", "Beta", "FR", 3)]


def test_read_ahead_keeps_the_order_raises_the_producers_error_and_stops_with_the_consumer() -> None:
    assert list(crm_staging.read_ahead(iter(range(100)))) == list(range(100))

    def failing() -> Iterator[int]:
        yield 1
        raise UpstreamUnavailable("gone")

    seen = []
    with pytest.raises(UpstreamUnavailable, match="gone"):
        for item in crm_staging.read_ahead(failing()):
            seen.append(item)
    assert seen == [1]

    produced = []

    def endless() -> Iterator[int]:
        for i in range(10**9):
            produced.append(i)
            yield i

    reader = crm_staging.read_ahead(endless())
    assert next(reader) == 0
    reader.close()  # the consumer stops: the producer stops too (close joins it)
    assert len(produced) <= 3
