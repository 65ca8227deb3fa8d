"""The usage timer end to end on real parts: the mock API over HTTP, Azurite blobs and table
state, an in-memory DuckDB warehouse. Only the readiness gate is a recording fake (it belongs
to the builder), and backoff sleeps go to a list instead of the clock.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pipeline_tools.mock_usage_api import MockUsageApi
from shared.adapters.usage_api import TokenBucketLimiter, UsageApiClient
from shared.adapters.warehouse.duckdb_engine import DuckDBWarehouse
from shared.errors import AuthenticationFailed
from shared.services.readiness import MarkResult
from shared.services.usage_ingest import TickResult, load_watermarks, raw_manifest_path, raw_ndjson_path
from shared.settings import Settings
from shared.wiring import Resources

pytestmark = pytest.mark.integration

COMPANIES = 300
KEY = "timer-test-key-93c1"


def day(n: int) -> dt.date:
    return dt.date(2025, 3, n)


def tick_time(n: int) -> dt.datetime:
    """01:00 UTC on 2025-03-n: the default schedule."""
    return dt.datetime(2025, 3, n, 1, 0, tzinfo=dt.UTC)


class RecordingGate:
    """Stands in for the builder's ReadinessGate: a mark changes the date only on a new version."""

    def __init__(self) -> None:
        self.versions: dict[dt.date, str] = {}
        self.changed: list[dt.date] = []
        self.lock = threading.Lock()

    def mark_input_present(
        self, activity_date: dt.date, input_name: str, version: str, rows: int, now: dt.datetime, run_id: str
    ) -> MarkResult:
        with self.lock:
            changed = self.versions.get(activity_date) != version
            self.versions[activity_date] = version
            if changed:
                self.changed.append(activity_date)
        return MarkResult(activity_date, changed, changed)

    def check_grace_periods(self, now: dt.datetime, run_id: str) -> list[dt.date]:
        return []


@pytest.fixture
def api() -> Iterator[MockUsageApi]:
    with MockUsageApi(COMPANIES, start=dt.date(2025, 1, 1), end=dt.date(2025, 12, 31), key=KEY) as server:
        yield server


@pytest.fixture
def resources(
    api: MockUsageApi, make_storage_settings: Callable[..., Settings], make_resources: Callable[..., Resources]
) -> Resources:
    settings = make_storage_settings(
        USAGE_API_BASE_URL=api.base_url,
        USAGE_API_KEY=KEY,
        USAGE_API_PAGE_SIZE=50,
        USAGE_API_RATE_LIMIT_RPS=1000,
        USAGE_API_MAX_ATTEMPTS=3,
        USAGE_LOOKBACK_DAYS=2,
        USAGE_MAX_CATCHUP_DAYS=10,
    )
    sleeps: list[float] = []
    client = UsageApiClient(settings, limiter=TokenBucketLimiter(1000, sleep=sleeps.append), sleep=sleeps.append)
    warehouse = DuckDBWarehouse(":memory:")
    warehouse.apply_schema()
    return make_resources(settings, warehouse=warehouse, readiness=RecordingGate(), usage_api=client)


def staged_table(resources: Resources) -> list[dict[str, Any]]:
    return resources.warehouse.run_sql("SELECT * FROM stg.product_usage ORDER BY activity_date, company_id")


def pulls_table(resources: Resources) -> list[dict[str, Any]]:
    return resources.warehouse.run_sql("SELECT * FROM stg.usage_pulls ORDER BY activity_date")


def staged_dates(resources: Resources) -> list[dt.date]:
    return [r["activity_date"] for r in pulls_table(resources)]


def staged_numbers(resources: Resources, on: dt.date) -> list[tuple[str, int, int]]:
    return [
        (r["company_id"], r["active_users"], r["events"]) for r in staged_table(resources) if r["activity_date"] == on
    ]


def expected_numbers(api: MockUsageApi, on: dt.date) -> list[tuple[str, int, int]]:
    return [(r["company_id"], r["active_users"], r["events"]) for r in api.dataset.records(on)]


def requested_dates(api: MockUsageApi) -> list[str]:
    """Dates asked for on the first page of each pull, in order."""
    return [r.query["date"] for r in api.requests if "cursor" not in r.query]


def tick(resources: Resources, n: int, past_due: bool = False) -> TickResult:
    return resources.run_usage_tick(tick_time(n), past_due=past_due)


def test_a_tick_stages_exactly_the_apis_numbers(resources: Resources, api: MockUsageApi) -> None:
    result = tick(resources, 10)
    assert result.by_status("staged") == [day(7), day(8), day(9)]
    for on in (day(7), day(8), day(9)):
        assert staged_numbers(resources, on) == expected_numbers(api, on)
    manifest = json.loads(resources.blobs.read_bytes(resources.settings.raw_container, raw_manifest_path(day(9))))
    assert manifest["records"] == len(expected_numbers(api, day(9)))
    assert manifest["pages"] == len([r for r in api.requests if r.query["date"] == "2025-03-09"])


def test_missed_days_are_caught_up(resources: Resources, api: MockUsageApi) -> None:
    tick(resources, 10)  # pulls 7..9
    api.clear_log()
    result = tick(resources, 15)  # ticks of the 11th..14th never ran
    assert result.plan.dates == tuple(day(n) for n in range(10, 15))
    assert {result.plan.reasons[day(n)] for n in (10, 11)} == {"catchup"}
    assert requested_dates(api) == [f"2025-03-{n}" for n in range(10, 15)]
    assert staged_dates(resources) == [day(n) for n in range(7, 15)]
    assert sorted(load_watermarks(resources.state_table)) == [day(n) for n in range(7, 15)]


def test_the_lookback_repulls_recent_days_and_picks_up_corrections(resources: Resources, api: MockUsageApi) -> None:
    tick(resources, 10)
    gate: RecordingGate = resources.readiness  # type: ignore[assignment]
    gate.changed.clear()
    api.correct(day(8))  # the API corrects the 8th after our first pull
    api.clear_log()
    result = tick(resources, 11)
    assert requested_dates(api) == ["2025-03-08", "2025-03-09", "2025-03-10"]
    assert result.plan.reasons[day(8)] == "lookback"
    assert staged_numbers(resources, day(8)) == expected_numbers(api, day(8))
    assert gate.changed == [day(8), day(10)]  # the corrected day re-opens; the unchanged 9th does not
    assert result.by_status("unchanged") == [day(9)]


def test_a_second_delivery_of_the_same_tick_is_harmless(resources: Resources, api: MockUsageApi) -> None:
    tick(resources, 10)
    container = resources.settings.raw_container
    before = (
        staged_table(resources),
        pulls_table(resources),
        resources.blobs.read_bytes(container, raw_ndjson_path(day(9))),
    )
    gate: RecordingGate = resources.readiness  # type: ignore[assignment]
    versions = dict(gate.versions)
    gate.changed.clear()
    again = tick(resources, 10, past_due=True)
    assert again.by_status("unchanged") == [day(7), day(8), day(9)]
    after = (
        staged_table(resources),
        pulls_table(resources),
        resources.blobs.read_bytes(container, raw_ndjson_path(day(9))),
    )
    assert after == before
    assert gate.versions == versions and gate.changed == []


def test_two_overlapping_runs_leave_the_same_tables_as_one(resources: Resources, api: MockUsageApi) -> None:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            tick(resources, 10)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for on in (day(7), day(8), day(9)):
        assert staged_numbers(resources, on) == expected_numbers(api, on)
    assert len(pulls_table(resources)) == 3


def test_duplicates_across_pages_are_staged_once(resources: Resources, api: MockUsageApi) -> None:
    api.set_duplicates(True)
    tick(resources, 10)
    rows = resources.warehouse.run_sql(
        "SELECT COUNT(*) AS n, COUNT(DISTINCT company_id) AS d FROM stg.product_usage WHERE activity_date = @d",
        {"d": day(9)},
    )
    assert rows == [{"n": len(expected_numbers(api, day(9))), "d": len(expected_numbers(api, day(9)))}]
    [pull] = [p for p in pulls_table(resources) if p["activity_date"] == day(9)]
    assert pull["duplicate_record_count"] > 0


def test_a_day_whose_retries_run_out_is_not_staged_and_the_others_are(resources: Resources, api: MockUsageApi) -> None:
    api.fail_next(3, status=503)  # the first pull (the 7th) fails all of its 3 attempts
    result = tick(resources, 10)
    assert result.by_status("failed") == [day(7)]
    assert staged_dates(resources) == [day(8), day(9)]
    assert resources.blobs.info(resources.settings.raw_container, raw_ndjson_path(day(7))) is None
    alerts = resources.alerts.alerts  # type: ignore[attr-defined]
    assert [(a.severity, a.date) for a in alerts] == [("error", day(7))]
    api.clear_log()
    tick(resources, 11)  # the next tick retries the failed day
    assert "2025-03-07" in requested_dates(api)
    assert day(7) in staged_dates(resources)


def test_a_revoked_key_stops_the_run_with_nothing_staged(resources: Resources, api: MockUsageApi) -> None:
    api.deny_auth(401)
    with pytest.raises(AuthenticationFailed):
        tick(resources, 10)
    assert len(api.requests) == 1
    assert staged_table(resources) == []
    [alert] = resources.alerts.alerts  # type: ignore[attr-defined]
    assert alert.severity == "error" and KEY not in alert.message
