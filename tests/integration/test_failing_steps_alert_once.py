"""A failing step produces exactly one alert carrying its run id, and a failed row in ops.

Real parts: Azurite (blobs, queue, table state), the mock Usage API over HTTP, DuckDB; only the
alert sink records instead of posting (its webhook delivery is tested on its own).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pipeline_tools.mock_usage_api import MockUsageApi
from shared.adapters.warehouse.duckdb_engine import DuckDBWarehouse
from shared.errors import AuthenticationFailed, BuildError
from shared.host_config import queue_config
from shared.services.alerts import RecordingAlertSink
from shared.settings import Settings
from shared.wiring import Resources

pytestmark = pytest.mark.integration

KEY = "alert-once-key-5d2e"


@pytest.fixture
def api() -> Iterator[MockUsageApi]:
    with MockUsageApi(20, start=dt.date(2025, 1, 1), end=dt.date(2025, 12, 31), key=KEY) as server:
        yield server


@pytest.fixture
def resources(
    api: MockUsageApi,
    warehouse: DuckDBWarehouse,
    make_storage_settings: Callable[..., Settings],
    make_resources: Callable[..., Resources],
) -> Resources:
    settings = make_storage_settings(USAGE_API_BASE_URL=api.base_url, USAGE_API_KEY=KEY, USAGE_API_RATE_LIMIT_RPS=1000)
    return make_resources(settings, warehouse=warehouse)


def runs(resources: Resources, run_id: str) -> list[dict[str, Any]]:
    return resources.warehouse.run_sql(
        "SELECT step, status, error_type FROM ops.pipeline_runs WHERE run_id = @run_id ORDER BY started_at",
        {"run_id": run_id},
    )


def only_alert(resources: Resources) -> Any:
    alerts = resources.alerts
    assert isinstance(alerts, RecordingAlertSink)
    assert len(alerts.alerts) == 1, [a.title for a in alerts.alerts]
    return alerts.alerts[0]


def test_a_revoked_api_key_alerts_once_with_the_run_id_and_fails_the_run_in_ops(
    resources: Resources, api: MockUsageApi
) -> None:
    api.deny_auth(401)

    with pytest.raises(AuthenticationFailed):
        resources.run_usage_tick(dt.datetime(2025, 3, 10, 1, 0, tzinfo=dt.UTC))

    alert = only_alert(resources)
    assert alert.severity == "error" and alert.run_id
    assert KEY not in alert.message
    failed = [r for r in runs(resources, alert.run_id) if r["status"] == "failed"]
    assert failed and failed[0]["error_type"] == "AuthenticationFailed"


def test_a_malformed_crm_file_alerts_once_with_the_run_id_and_records_the_rejection(resources: Resources) -> None:
    resources.blobs.write(
        resources.settings.crm_container,
        "crm_2025-03-09.csv",
        b"company_id,name,industry_tag,last_contact_at\nC000001,Acme,saas,\n",
    )

    resources.stage_crm_blob("crm_2025-03-09.csv")

    alert = only_alert(resources)
    assert alert.severity == "error" and alert.run_id
    assert "country" in alert.message
    assert runs(resources, alert.run_id) == [{"step": "crm_staging", "status": "rejected", "error_type": None}]


def test_a_sql_error_in_the_builder_alerts_once_across_every_redelivery(resources: Resources) -> None:
    """The host redelivers a failing (forced: no inputs needed) message up to maxDequeueCount times; only the delivery
    that sends it to the poison queue alerts, and every delivery leaves a failed run in ops."""
    resources.warehouse.run_sql("DROP TABLE stg.company_first_usage")  # read by every build
    max_dequeue = queue_config().max_dequeue_count

    for delivery in range(1, max_dequeue + 1):
        with pytest.raises(BuildError):
            resources.handle_build_message(b'{"dates": ["2025-03-09"], "force": true}', dequeue_count=delivery)

    alert = only_alert(resources)
    assert "poison" in alert.title.lower() and alert.run_id
    assert runs(resources, alert.run_id) == [{"step": "build", "status": "failed", "error_type": "BuildError"}]
    failed_builds = resources.warehouse.run_sql(
        "SELECT COUNT(*) AS n FROM ops.pipeline_runs WHERE step = @step AND status = @status",
        {"step": "build", "status": "failed"},
    )
    assert failed_builds == [{"n": max_dequeue}]
