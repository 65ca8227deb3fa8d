"""SPEC sections 4, 5 and 7 end to end: the registered functions, delivered by the local runner."""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # the fixtures come from tests/e2e/conftest.py; only their types are named here
    from tests.e2e.conftest import Pipeline, PipelineFactory

pytestmark = pytest.mark.e2e


def test_the_sample_builds_one_row_per_company_of_the_spine_for_every_date_with_valid_crm(
    make_pipeline: PipelineFactory,
) -> None:
    pipeline = make_pipeline(companies=30, days=10)

    pipeline.run_everything()

    built = pipeline.rows_per_date()
    assert sorted(built) == pipeline.good_dates
    assert built == {day: pipeline.expected_rows(day) for day in pipeline.good_dates}
    usage = pipeline.resources.warehouse.run_sql(
        "SELECT activity_date, SUM(active_users) AS users, SUM(events) AS events "
        "FROM analytics.company_daily_activity GROUP BY activity_date"
    )
    for row in usage:
        records = pipeline.api.dataset.records(row["activity_date"])
        assert (row["users"], row["events"]) == (
            sum(r["active_users"] for r in records),
            sum(r["events"] for r in records),
        )


def test_a_bad_crm_file_is_quarantined_and_alerted_while_the_other_dates_build(
    make_pipeline: PipelineFactory,
) -> None:
    pipeline = make_pipeline(companies=20, days=6)
    bad_name = f"crm_{pipeline.sample.bad_date}.csv"

    pipeline.run_everything()

    quarantined = {b.name for b in pipeline.resources.blobs.list(pipeline.settings.quarantine_container)}
    assert any(name.endswith(bad_name) for name in quarantined), "a copy of the file"
    assert any(bad_name in name and "report" in name for name in quarantined), "an error report beside it"
    recorded = pipeline.resources.warehouse.run_sql("SELECT source_blob, status FROM ops.quarantined_files")
    assert recorded == [{"source_blob": bad_name, "status": "rejected"}]
    assert any(alert.severity == "error" and bad_name in alert.message for alert in pipeline.alerts.alerts)
    assert sorted(pipeline.rows_per_date()) == pipeline.good_dates


def test_every_trigger_delivered_twice_leaves_the_same_tables_as_once(make_pipeline: PipelineFactory) -> None:
    once = make_pipeline(companies=25, days=8)
    once.run_everything()

    twice = make_pipeline(companies=25, days=8, deliver_twice=True)
    twice.upload_crm()
    twice.process()
    twice.tick()
    twice.tick()  # two timer ticks (each itself delivered twice)
    twice.upload_crm([next(twice.sample.files())])  # the same bytes again: a new ETag, a new delivery
    twice.process()

    duplicates = [i for i in twice.runner.history if i.trigger.get("duplicate")]
    assert {i.function for i in duplicates} == {"crm_snapshot_arrived", "usage_timer", "build_requested"}
    for table in ("analytics.company_daily_activity", "dim.companies", "stg.crm_companies", "stg.product_usage"):
        assert twice.table(table) == once.table(table), table


def test_an_api_outage_for_one_day_is_caught_up_by_the_next_tick_and_its_window_is_rebuilt(
    make_pipeline: PipelineFactory,
) -> None:
    reference = make_pipeline(companies=20, days=10, include_bad_file=False)
    reference.run_everything()

    pipeline = make_pipeline(companies=20, days=10, include_bad_file=False)
    pipeline.upload_crm()
    pipeline.process()
    outage_index = 4
    outage_day = pipeline.dates[outage_index]
    # One request per day, in date order: both attempts (USAGE_API_MAX_ATTEMPTS=2) at that day fail.
    pipeline.api.fail_next(2, status=503, after=outage_index)
    pipeline.tick()

    assert outage_day not in pipeline.rows_per_date()
    assert any(alert.date == outage_day for alert in pipeline.alerts.alerts)
    assert pipeline.table("analytics.company_daily_activity") != reference.table("analytics.company_daily_activity")

    pipeline.tick()  # the API is back

    assert pipeline.rows_per_date() == reference.rows_per_date()
    assert pipeline.table("analytics.company_daily_activity") == reference.table("analytics.company_daily_activity")


def test_a_build_message_that_always_fails_ends_in_the_poison_queue_with_an_alert(
    make_pipeline: PipelineFactory,
) -> None:
    pipeline = make_pipeline(companies=10, days=2, include_bad_file=False, warehouse_wrapper=RefusesBuilds)

    pipeline.run_everything()

    # Affected-only messages (a CRM file before its usage) succeed: no day was built yet to
    # rebuild. Every message that had a day to build failed until the poison queue.
    failed = [i for i in pipeline.runner.history if i.function == "build_requested" and not i.succeeded]
    assert failed and max(i.trigger["dequeue_count"] for i in failed) == 5  # host.json maxDequeueCount
    poison = _decoded(pipeline, f"{pipeline.settings.build_queue}-poison")
    assert poison and all("dates" in m or "start" in m for m in poison)
    assert not any(m.get("affected_only") for m in poison)
    assert _decoded(pipeline, pipeline.settings.build_queue) == []
    assert "Build message moved to poison" in pipeline.alert_titles()
    assert pipeline.rows_per_date() == {}


class RefusesBuilds:
    """A warehouse whose analytics build always fails (a permanent, non-transient fault)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def run(self, name: str, params: Any = None, **kwargs: Any) -> Any:
        if name.startswith("analytics/company_daily_activity__build"):
            raise RuntimeError("the warehouse refuses this build")
        return self._inner.run(name, params, **kwargs)


def _decoded(pipeline: Pipeline, queue: str) -> list[dict[str, Any]]:
    from azure.storage.queue import QueueClient

    conn = pipeline.settings.storage_connection_string()
    assert conn is not None
    client = QueueClient.from_connection_string(conn, queue)
    return [json.loads(base64.b64decode(m.content)) for m in client.peek_messages(max_messages=32)]
