"""Alerts are about incidents (Azurite, DuckDB, the mock API): an outage failing several dates in
one tick is one alert listing the dates; two different bad CRM files for one date are two
incidents, while the same file delivered again is the same incident."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator

import pytest

from pipeline_tools.mock_usage_api import MockUsageApi
from shared.adapters.usage_api import UsageApiClient
from shared.adapters.warehouse.duckdb_engine import DuckDBWarehouse
from shared.services.alerts import DedupingAlertSink, RecordingAlertSink
from shared.settings import Settings
from shared.wiring import Resources

pytestmark = pytest.mark.integration

KEY = "grouping-key-1"


@pytest.fixture
def api() -> Iterator[MockUsageApi]:
    with MockUsageApi(50, start=dt.date(2025, 1, 1), end=dt.date(2025, 12, 31), key=KEY) as server:
        yield server


def test_an_outage_failing_three_dates_in_one_tick_is_one_alert_listing_them(
    api: MockUsageApi,
    make_storage_settings: Callable[..., Settings],
    make_resources: Callable[..., Resources],
    warehouse: DuckDBWarehouse,
) -> None:
    settings = make_storage_settings(
        USAGE_API_BASE_URL=api.base_url, USAGE_API_KEY=KEY, USAGE_API_MAX_ATTEMPTS=2, USAGE_LOOKBACK_DAYS=2
    )
    sink = RecordingAlertSink()
    resources = make_resources(
        settings, warehouse=warehouse, alerts=sink, usage_api=UsageApiClient(settings, sleep=lambda _s: None)
    )
    api.fail_next(1000, status=503)

    result = resources.run_usage_tick(dt.datetime(2025, 3, 10, 1, 0, tzinfo=dt.UTC))

    assert result.by_status("failed") == [dt.date(2025, 3, 7), dt.date(2025, 3, 8), dt.date(2025, 3, 9)]
    failures = [a for a in sink.alerts if a.step == "usage_pull"]
    assert len(failures) == 1
    (alert,) = failures
    assert alert.title == "usage ingestion failed for 3 dates: UpstreamUnavailable"
    for day in ("2025-03-07", "2025-03-08", "2025-03-09"):
        assert f"{day}: usage API unavailable (HTTP 503)" in alert.message
    assert alert.run_id == result.run_id


def test_two_bad_files_for_one_date_are_two_alerts_and_a_redelivery_is_none(
    storage_settings: Settings, make_resources: Callable[..., Resources], warehouse: DuckDBWarehouse
) -> None:
    recorded = RecordingAlertSink()
    resources = make_resources(storage_settings, warehouse=warehouse, alerts=DedupingAlertSink(recorded))
    container = storage_settings.crm_container
    resources.blobs.write(container, "crm_2025-03-09.csv", b"company_id,name\nc1,Acme\n")  # no country...
    resources.stage_crm_blob("crm_2025-03-09.csv")
    resources.stage_crm_blob("crm_2025-03-09.csv")  # the host delivers the same version again
    resources.blobs.write(container, "crm_2025-03-09_fix.csv", b"\xff\xfe not utf-8\n")  # a second, different bad file
    resources.stage_crm_blob("crm_2025-03-09_fix.csv")

    assert [(a.title, a.subject.split("@")[0]) for a in recorded.alerts] == [
        ("CRM file rejected", "crm_2025-03-09.csv"),
        ("CRM file rejected", "crm_2025-03-09_fix.csv"),
    ]
