"""SPEC section 5 end to end: freshness is evaluated on the timer's schedule, through the
registered usage_timer function, and a missing input alerts once per (date, input)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # the fixtures come from tests/e2e/conftest.py; only their types are named here
    from tests.e2e.conftest import Pipeline, PipelineFactory

pytestmark = pytest.mark.e2e


def freshness_alerts(pipeline: Pipeline) -> list[tuple[str, str | None, str]]:
    return [
        (a.severity, a.subject, a.facts.get("Dates", str(a.date)))
        for a in pipeline.alerts.alerts
        if a.step == "freshness"
    ]


def test_a_missing_crm_file_alerts_once_over_two_ticks_and_its_arrival_resolves_it(
    make_pipeline: PipelineFactory,
) -> None:
    pipeline = make_pipeline(companies=8, days=6)  # the bad CRM file's day is past its deadline
    bad = pipeline.sample.bad_date
    assert bad is not None

    pipeline.run_everything()
    pipeline.tick()

    assert freshness_alerts(pipeline) == [("error", "crm", bad.isoformat())]
    [row] = pipeline.resources.warehouse.run_sql(
        "SELECT status, alerted_at, resolved_at FROM ops.input_freshness "
        "WHERE activity_date = @d AND input_name = 'crm'",
        {"d": bad},
    )
    assert row["status"] == "missing" and row["alerted_at"] is not None and row["resolved_at"] is None

    good = next(f for f in pipeline.sample.files() if f.bad_reason is None)
    pipeline.upload_crm([dataclasses.replace(good, snapshot_date=bad, blob_name=f"crm_{bad.isoformat()}.csv")])
    pipeline.process()
    pipeline.tick()

    assert freshness_alerts(pipeline) == [("error", "crm", bad.isoformat()), ("info", "crm", bad.isoformat())]
    statuses = pipeline.resources.warehouse.run_sql(
        "SELECT DISTINCT status FROM ops.input_freshness WHERE status NOT IN ('on_time', 'waiting')"
    )
    assert statuses == [{"status": "late"}]
