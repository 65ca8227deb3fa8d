"""Usage ingestion service with in-memory fakes for storage, the gate and the source.

The warehouse is a real in-memory DuckDB, so the staging SQL runs as it will locally.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from shared.adapters.usage_api import DayPull
from shared.adapters.warehouse.duckdb_engine import DuckDBWarehouse
from shared.errors import AuthenticationFailed, ConcurrencyConflict, RetryBudgetExhausted, UpstreamUnavailable
from shared.services.alerts import RecordingAlertSink
from shared.services.readiness import MarkResult
from shared.services.usage_ingest import (
    load_watermarks,
    raw_manifest_path,
    raw_ndjson_path,
    raw_rejects_path,
    replay_from_raw,
    run_tick,
    run_usage_tick,
    save_watermark,
    stage_from_raw,
)
from shared.settings import Settings
from shared.wiring import Resources
from tests.fakes import InMemoryStateTable

NOW = dt.datetime(2025, 3, 10, 1, 0, tzinfo=dt.UTC)
D9, D8, D7 = dt.date(2025, 3, 9), dt.date(2025, 3, 8), dt.date(2025, 3, 7)
RAW = "usage-raw"


# ---- fakes -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FakeBlobInfo:
    container: str
    name: str
    size: int


class FakeBlobStore:
    """Whole-or-nothing writes like BlobStore: an iterable that raises leaves no blob."""

    def __init__(self) -> None:
        self.blobs: dict[tuple[str, str], bytes] = {}
        self.writes: list[str] = []

    def ensure_container(self, container: str) -> None:
        pass

    def write(self, container: str, name: str, data: bytes | Iterable[bytes], **_: Any) -> FakeBlobInfo:
        content = data if isinstance(data, bytes) else b"".join(data)
        self.blobs[(container, name)] = content
        self.writes.append(name)
        return FakeBlobInfo(container, name, len(content))

    def info(self, container: str, name: str) -> FakeBlobInfo | None:
        content = self.blobs.get((container, name))
        return None if content is None else FakeBlobInfo(container, name, len(content))

    def iter_chunks(self, container: str, name: str, chunk_size: int = 7) -> Iterator[bytes]:
        content = self.blobs[(container, name)]
        for start in range(0, len(content), chunk_size):  # tiny chunks: lines straddle them
            yield content[start : start + chunk_size]

    def read_bytes(self, container: str, name: str) -> bytes:
        return self.blobs[(container, name)]

    def delete(self, container: str, name: str) -> None:
        self.blobs.pop((container, name), None)


class FakeReadiness:
    """Records marks; a mark "changes" the date only when the version differs (as the gate does)."""

    def __init__(self) -> None:
        self.versions: dict[tuple[dt.date, str], str] = {}
        self.marks: list[tuple[dt.date, str, str, int, bool]] = []
        self.grace_checks: list[str] = []

    def mark_input_present(
        self, day: dt.date, name: str, version: str, rows: int, now: dt.datetime, run_id: str
    ) -> MarkResult:
        changed = self.versions.get((day, name)) != version
        self.versions[(day, name)] = version
        self.marks.append((day, name, version, rows, changed))
        return MarkResult(day, changed, changed)

    def check_grace_periods(self, now: dt.datetime, run_id: str) -> list[dt.date]:
        self.grace_checks.append(run_id)
        return []


def record(company: str, day: dt.date, users: Any = 1, events: Any = 2) -> dict[str, Any]:
    return {"company_id": company, "date": day.isoformat(), "active_users": users, "events": events}


class FakeSource:
    """Days map to records (or to an exception); counts calls."""

    def __init__(self, days: dict[dt.date, list[dict[str, Any]] | BaseException] | None = None) -> None:
        self.days = days or {}
        self.calls: list[dt.date] = []

    def fetch_day(self, day: dt.date) -> DayPull:
        self.calls.append(day)
        value = self.days.get(day, [record("C000001", day)])
        if isinstance(value, BaseException):
            raise value
        body = b"".join(json.dumps(r).encode() + b"\n" for r in value)
        return DayPull(day, dt.datetime(2025, 3, 10, 1, 0, 5), 1, len(value), ["req-1"], lambda: iter([body]))


# ---- fixtures ----------------------------------------------------------------------------------
@pytest.fixture
def settings() -> Settings:
    return Settings(raw_container=RAW, usage_lookback_days=0, usage_max_catchup_days=31)


def wired(settings: Settings, warehouse: Any, blobs: Any, state_table: Any, readiness: Any, alerts: Any) -> Resources:
    """The container over the fakes: what the timer hands ingestion."""
    return Resources(
        settings, warehouse=warehouse, blobs=blobs, state_table=state_table, readiness=readiness, alerts=alerts
    )


@pytest.fixture
def deps(settings: Settings) -> Resources:
    warehouse = DuckDBWarehouse(":memory:")
    warehouse.apply_schema()
    return wired(settings, warehouse, FakeBlobStore(), InMemoryStateTable(), FakeReadiness(), RecordingAlertSink())


def staged(deps: Resources, day: dt.date | None = None) -> list[dict[str, Any]]:
    rows = deps.warehouse.run_sql(
        "SELECT * FROM stg.product_usage ORDER BY activity_date, company_id",
    )
    return [r for r in rows if day is None or r["activity_date"] == day]


def pulls(deps: Resources) -> list[dict[str, Any]]:
    return deps.warehouse.run_sql("SELECT * FROM stg.usage_pulls ORDER BY activity_date")


def runs(deps: Resources) -> list[tuple[str, Any, str]]:
    rows = deps.warehouse.run_sql("SELECT step, run_date, status FROM ops.pipeline_runs ORDER BY started_at, step")
    return [(r["step"], r["run_date"], r["status"]) for r in rows]


# ---- the happy path ----------------------------------------------------------------------------
def test_a_day_is_landed_raw_staged_marked_present_and_watermarked(deps: Resources) -> None:
    source = FakeSource({D9: [record("C000002", D9, 3, 30), record("C000001", D9, 1, 5)]})
    result = run_tick(NOW, source, deps, run_id="run-1")

    assert result.by_status("staged") == [D9]
    assert [(r["company_id"], r["active_users"], r["events"]) for r in staged(deps)] == [
        ("C000001", 1, 5),
        ("C000002", 3, 30),
    ]
    assert {r["run_id"] for r in staged(deps)} == {"run-1"}
    assert staged(deps)[0]["source_blob"] == f"{RAW}/date=2025-03-09/usage.ndjson"
    [pull] = pulls(deps)
    assert (pull["api_record_count"], pull["staged_row_count"], pull["page_count"]) == (2, 2, 1)
    [(day, name, version, rows, changed)] = deps.readiness.marks
    assert (day, name, rows, changed) == (D9, "usage", 2, True)
    assert version == pull["content_hash"]
    assert load_watermarks(deps.state_table)[D9]["content_hash"] == version
    assert deps.readiness.grace_checks == ["run-1"]
    assert runs(deps) == [("usage_pull", D9, "succeeded"), ("usage_staging", D9, "succeeded")]
    assert deps.warehouse.run_sql("SELECT COUNT(*) AS n FROM stg.product_usage_landing") == [{"n": 0}]


def test_raw_landing_writes_ndjson_first_and_manifest_last(deps: Resources) -> None:
    run_tick(NOW, FakeSource({D9: [record("C1", D9), {"company_id": "", "date": "2025-03-09"}]}), deps)
    assert deps.blobs.writes == [raw_ndjson_path(D9), raw_rejects_path(D9), raw_manifest_path(D9)]
    manifest = json.loads(deps.blobs.read_bytes(RAW, raw_manifest_path(D9)))
    assert manifest["records"] == 2 and manifest["rejects"] == 1 and manifest["pages"] == 1
    assert manifest["request_ids"] == ["req-1"]
    assert manifest["fetched_at"] == "2025-03-10T01:00:05"
    assert len(manifest["ndjson"]["sha256"]) == 64


def test_the_raw_ndjson_keeps_records_as_received_including_invalid_ones(deps: Resources) -> None:
    bad = {"company_id": "C2", "date": "2025-03-09", "active_users": "7", "events": 1}
    run_tick(NOW, FakeSource({D9: [record("C1", D9), bad]}), deps)
    lines = deps.blobs.read_bytes(RAW, raw_ndjson_path(D9)).splitlines()
    assert [json.loads(line) for line in lines] == [record("C1", D9), bad]


# ---- re-pulls ----------------------------------------------------------------------------------
def test_an_identical_repull_leaves_staging_untouched_and_the_version_unchanged(deps: Resources) -> None:
    source = FakeSource({D9: [record("C1", D9, 2, 4)]})
    run_tick(NOW, source, deps, run_id="first")
    before = (staged(deps), pulls(deps))
    second = run_tick(NOW, source, deps, run_id="second")
    assert second.by_status("unchanged") == [D9]
    assert (staged(deps), pulls(deps)) == before
    assert [m[4] for m in deps.readiness.marks] == [True, False]


def test_a_changed_repull_replaces_the_day_and_gives_a_new_version(deps: Resources) -> None:
    run_tick(NOW, FakeSource({D9: [record("C1", D9, 2, 4), record("C2", D9)]}), deps)
    run_tick(NOW, FakeSource({D9: [record("C1", D9, 5, 9)]}), deps, run_id="correction")
    assert [(r["company_id"], r["active_users"], r["run_id"]) for r in staged(deps)] == [("C1", 5, "correction")]
    first, second = deps.readiness.marks
    assert first[2] != second[2] and second[4] is True


def test_repeated_records_are_staged_once_and_conflicts_keep_the_largest(deps: Resources) -> None:
    records = [record("C1", D9, 1, 1), record("C1", D9, 1, 1), record("C2", D9, 2, 2), record("C2", D9, 3, 0)]
    run_tick(NOW, FakeSource({D9: records}), deps)
    assert [(r["company_id"], r["active_users"], r["events"]) for r in staged(deps)] == [("C1", 1, 1), ("C2", 3, 0)]
    [pull] = pulls(deps)
    assert (pull["duplicate_record_count"], pull["conflicting_record_count"], pull["api_record_count"]) == (1, 1, 4)
    report = json.loads(deps.blobs.read_bytes(RAW, raw_rejects_path(D9)))
    assert report["conflicts"] == 1


# ---- rejects -----------------------------------------------------------------------------------
def test_rejected_records_go_to_a_report_and_an_alert_not_to_staging(deps: Resources) -> None:
    records = [record(f"C{i}", D9) for i in range(40)] + [record("BAD", D9, users=-1)]
    run_tick(NOW, FakeSource({D9: records}), deps)
    assert len(staged(deps)) == 40
    report = json.loads(deps.blobs.read_bytes(RAW, raw_rejects_path(D9)))
    assert report["rejects_by_reason"] == {"negative_active_users": 1}
    assert [a.severity for a in deps.alerts.alerts] == ["warning"]
    assert pulls(deps)[0]["rejected_record_count"] == 1


def test_too_many_rejects_fail_the_day_and_keep_what_was_staged(deps: Resources) -> None:
    run_tick(NOW, FakeSource({D9: [record("C1", D9, 2, 2)]}), deps)
    before = staged(deps)
    drifted = [{"company_id": "C1", "date": "2025-03-09", "activeUsers": 3, "events": 3}]
    result = run_tick(NOW, FakeSource({D9: drifted}), deps)
    assert result.by_status("failed") == [D9]
    assert staged(deps) == before
    assert any(a.severity == "error" and "RejectedInput" in a.title for a in deps.alerts.alerts)
    assert deps.warehouse.run_sql("SELECT COUNT(*) AS n FROM stg.product_usage_landing") == [{"n": 0}]


def test_a_repull_without_rejects_removes_the_old_report(deps: Resources) -> None:
    run_tick(NOW, FakeSource({D9: [record("C1", D9)] * 30 + [record("", D9)]}), deps)
    assert deps.blobs.info(RAW, raw_rejects_path(D9)) is not None
    run_tick(NOW, FakeSource({D9: [record("C1", D9)]}), deps)
    assert deps.blobs.info(RAW, raw_rejects_path(D9)) is None


# ---- failures ----------------------------------------------------------------------------------
def test_a_failing_day_does_not_stop_the_other_days(deps: Resources) -> None:
    deps = wired(
        deps.settings.model_copy(update={"usage_lookback_days": 2}),
        deps.warehouse,
        deps.blobs,
        deps.state_table,
        deps.readiness,
        deps.alerts,
    )
    source = FakeSource({D8: UpstreamUnavailable("usage API unavailable (HTTP 503)")})
    result = run_tick(NOW, source, deps)
    assert result.by_status("staged") == [D7, D9]
    assert result.by_status("failed") == [D8]
    assert staged(deps, D8) == []
    assert load_watermarks(deps.state_table)[D8]["status"] == "failed"
    assert load_watermarks(deps.state_table)[D9]["status"] == "succeeded"
    assert deps.blobs.info(RAW, raw_ndjson_path(D8)) is None
    [alert] = deps.alerts.alerts
    assert (alert.severity, alert.date, alert.step) == ("error", D8, "usage_pull")
    assert ("usage_pull", D8, "failed") in runs(deps)


@pytest.mark.parametrize("error", [AuthenticationFailed("HTTP 401"), RetryBudgetExhausted("budget")])
def test_auth_failure_or_exhausted_budget_stops_the_run(deps: Resources, error: Exception) -> None:
    deps = wired(
        deps.settings.model_copy(update={"usage_lookback_days": 2}),
        deps.warehouse,
        deps.blobs,
        deps.state_table,
        deps.readiness,
        deps.alerts,
    )
    source = FakeSource({D7: error})
    with pytest.raises(type(error)):
        run_tick(NOW, source, deps, run_id="stopped")
    assert source.calls == [D7]  # no retry storm over the other days
    assert staged(deps) == []
    assert deps.readiness.grace_checks == ["stopped"]  # the CRM grace check still ran
    [alert] = deps.alerts.alerts
    assert alert.severity == "error" and "The run stopped" in alert.message


def test_a_pull_failing_mid_way_lands_nothing(deps: Resources) -> None:
    class Exploding(FakeSource):
        def fetch_day(self, day: dt.date) -> DayPull:
            pull = super().fetch_day(day)

            def chunks() -> Iterator[bytes]:
                yield b'{"company_id": "C1"'
                raise UpstreamUnavailable("connection reset")

            pull.chunks = chunks
            return pull

    result = run_tick(NOW, Exploding(), deps)
    assert result.by_status("failed") == [D9]
    assert deps.blobs.blobs == {}
    assert staged(deps) == []


# ---- staging from raw --------------------------------------------------------------------------
def test_replay_from_raw_restages_without_calling_the_api(deps: Resources) -> None:
    source = FakeSource({D9: [record("C1", D9, 4, 4)]})
    run_tick(NOW, source, deps, run_id="pull")
    deps.warehouse.run_sql("DELETE FROM stg.product_usage")
    deps.warehouse.run_sql("DELETE FROM stg.usage_pulls")
    staged_again = replay_from_raw(D9, deps, "replay", NOW)
    assert staged_again.changed and staged_again.rows == 1
    assert source.calls == [D9]
    assert [(r["company_id"], r["run_id"]) for r in staged(deps)] == [("C1", "replay")]
    assert deps.readiness.marks[-1][2] == deps.readiness.marks[0][2]  # same content, same version


def test_staging_refuses_an_ndjson_its_manifest_does_not_describe(deps: Resources) -> None:
    run_tick(NOW, FakeSource({D9: [record("C1", D9)]}), deps)
    deps.blobs.blobs[(RAW, raw_ndjson_path(D9))] = json.dumps(record("C9", D9)).encode() + b"\n"
    with pytest.raises(ConcurrencyConflict):
        stage_from_raw(D9, deps, "late", NOW)


def test_staging_needs_a_complete_landing(deps: Resources) -> None:
    deps.blobs.write(RAW, raw_ndjson_path(D9), json.dumps(record("C1", D9)).encode())
    with pytest.raises(Exception, match="incomplete"):
        stage_from_raw(D9, deps, "r", NOW)


# ---- watermarks --------------------------------------------------------------------------------
def test_a_watermark_never_moves_back_to_an_older_pull() -> None:
    state = InMemoryStateTable()
    newer, older = dt.datetime(2025, 3, 10, 2), dt.datetime(2025, 3, 10, 1)
    assert save_watermark(state, D9, newer, "v2", 10, "run-b")
    assert not save_watermark(state, D9, older, "v1", 9, "run-a")
    assert load_watermarks(state)[D9]["content_hash"] == "v2"


def test_watermarks_drive_the_catch_up(deps: Resources) -> None:
    for day in (dt.date(2025, 3, 4), dt.date(2025, 3, 5)):
        save_watermark(deps.state_table, day, dt.datetime(2025, 3, 6), "v", 1, "old")
    source = FakeSource()
    result = run_tick(NOW, source, deps)
    assert source.calls == [dt.date(2025, 3, d) for d in (6, 7, 8, 9)]
    assert result.plan.reasons[dt.date(2025, 3, 6)] == "catchup"


def test_past_due_ticks_pull_the_same_days(deps: Resources) -> None:
    on_time, late = FakeSource(), FakeSource()
    run_tick(NOW, on_time, deps)
    run_tick(NOW + dt.timedelta(hours=5), late, deps, past_due=True)
    assert on_time.calls == late.calls == [D9]


# ---- entry point through the container ---------------------------------------------------------
def test_the_timer_entry_point_uses_a_fresh_client_run_from_the_container(deps: Resources) -> None:
    class Client:
        runs = 0

        def for_run(self) -> FakeSource:
            Client.runs += 1
            return FakeSource()

    resources = Resources(
        deps.settings,
        warehouse=deps.warehouse,
        blobs=deps.blobs,
        state_table=deps.state_table,
        readiness=deps.readiness,
        alerts=deps.alerts,
        usage_api=Client(),
    )
    result = resources.run_usage_tick(NOW, past_due=False)
    assert Client.runs == 1 and result.by_status("staged") == [D9]
    assert run_usage_tick(NOW, True, resources).by_status("unchanged") == [D9]


def test_a_failed_pull_is_remembered_until_a_later_tick_succeeds(deps: Resources) -> None:
    run_tick(NOW, FakeSource({D9: UpstreamUnavailable("503")}), deps)
    later = NOW + dt.timedelta(days=2)
    source = FakeSource()
    run_tick(later, source, deps)
    assert source.calls == [D9, dt.date(2025, 3, 10), dt.date(2025, 3, 11)]
    assert {m["status"] for m in load_watermarks(deps.state_table).values()} == {"succeeded"}


def test_a_failed_repull_keeps_the_days_successful_watermark(deps: Resources) -> None:
    run_tick(NOW, FakeSource(), deps)
    run_tick(NOW, FakeSource({D9: UpstreamUnavailable("503")}), deps)
    assert load_watermarks(deps.state_table)[D9]["status"] == "succeeded"
