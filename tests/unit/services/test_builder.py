"""The builder service: messages, skip-if-unchanged, run history, poison and malformed handling."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import pytest

from shared.adapters.warehouse.duckdb_engine import DuckDBWarehouse
from shared.errors import BuildError
from shared.host_config import queue_config
from shared.rules.build_plan import InputVersions
from shared.services import builder, quality
from shared.services.alerts import RecordingAlertSink
from shared.settings import Settings
from shared.wiring import Resources

DAY = dt.date(2025, 3, 1)
REAL_CHECKS = quality.run_checks  # before the autouse fixture below replaces it


class FakeVersions:
    """The readiness gate as the builder sees it."""

    def __init__(self, versions: dict[dt.date, InputVersions] | None = None) -> None:
        self.versions = versions or {}
        self.recorded: list[tuple[dict[dt.date, InputVersions], str]] = []

    def input_versions(self, dates: Sequence[dt.date]) -> dict[dt.date, InputVersions]:
        return {d: v for d, v in self.versions.items() if d in set(dates)}

    def record_build(self, built: Mapping[dt.date, InputVersions], run_id: str, now: dt.datetime) -> None:
        self.recorded.append((dict(built), run_id))

    def lacking_inputs(self, dates: Sequence[dt.date], now: dt.datetime) -> list[dt.date]:
        return sorted(d for d in dates if d not in self.versions or self.versions[d].usage_version is None)


class FailingWarehouse(DuckDBWarehouse):
    """Fails the build SQL, like a warehouse outage or a broken statement would."""

    def run(self, name: str, params: Mapping[str, Any] | None = None, **kwargs: Any) -> list[dict[str, Any]]:
        if name == "analytics/company_daily_activity__build":
            raise BuildError("analytics/company_daily_activity__build: statement 2 failed: boom")
        return super().run(name, params, **kwargs)


def _stage(wh: DuckDBWarehouse) -> None:
    t = dt.datetime(2025, 3, 2)
    wh.run_sql("INSERT INTO stg.crm_snapshots VALUES (@d, 'crm.csv', 'c1', 1, 0, 0, @t, 'stage')", {"d": DAY, "t": t})
    wh.run_sql(
        "INSERT INTO dim.companies (company_id, valid_from, valid_to, is_current, company_name, country,"
        " industry_tag, last_contact_at, attributes_hash, run_id)"
        " VALUES ('acme', @d, NULL, 1, 'Acme', 'DE', 'saas', NULL, 'h', 'stage')",
        {"d": DAY},
    )
    wh.run_sql("INSERT INTO stg.product_usage VALUES (@d, 'acme', 3, 7, 'raw', @t, 'stage')", {"d": DAY, "t": t})


@pytest.fixture(autouse=True)
def checks_run(monkeypatch: pytest.MonkeyPatch) -> list[list[dt.date]]:
    """The dates each build hands to the data-quality checks (which are tested on their own)."""
    calls: list[list[dt.date]] = []
    monkeypatch.setattr(quality, "run_checks", lambda warehouse, dates, *args, **kwargs: calls.append(list(dates)))
    return calls


@pytest.fixture
def wh(warehouse: DuckDBWarehouse) -> DuckDBWarehouse:
    _stage(warehouse)
    return warehouse


def make_resources(wh: DuckDBWarehouse, **extra: Any) -> SimpleNamespace:
    return SimpleNamespace(
        settings=Settings(),
        warehouse=wh,
        readiness=extra.pop("readiness", FakeVersions({DAY: InputVersions("c1", "u1")})),
        alerts=RecordingAlertSink(),
        **extra,
    )


def message(payload: Any) -> bytes:
    return json.dumps(payload).encode()


def runs(wh: DuckDBWarehouse) -> list[dict[str, Any]]:
    return wh.run_sql("SELECT step, run_date, status, rows_out, error_type FROM ops.pipeline_runs ORDER BY started_at")


def test_build_message_builds_the_date_and_records_the_run(wh: DuckDBWarehouse) -> None:
    resources = make_resources(wh)
    outcome = builder.handle_build_message(message({"dates": ["2025-03-01"]}), 1, resources)

    assert outcome is not None and outcome.rows_written == 1
    assert wh.run_sql("SELECT company_id, active_users FROM analytics.company_daily_activity") == [
        {"company_id": "acme", "active_users": 3}
    ]
    assert runs(wh) == [{"step": "build", "run_date": DAY, "status": "succeeded", "rows_out": 1, "error_type": None}]
    assert wh.run_sql("SELECT activity_date, crm_version, usage_version, row_count FROM ops.date_builds") == [
        {"activity_date": DAY, "crm_version": "c1", "usage_version": "u1", "row_count": 1}
    ]
    assert resources.readiness.recorded == [({DAY: InputVersions("c1", "u1")}, outcome.run_id)]


def test_same_versions_again_are_skipped_and_recorded_as_skipped(wh: DuckDBWarehouse) -> None:
    resources = make_resources(wh)
    builder.handle_build_message(message({"dates": ["2025-03-01"]}), 1, resources)
    again = builder.handle_build_message(message({"dates": ["2025-03-01"]}), 1, resources)

    assert again is not None and again.skipped
    assert [r["status"] for r in runs(wh)] == ["succeeded", "skipped"]


def test_new_usage_version_rebuilds(wh: DuckDBWarehouse) -> None:
    resources = make_resources(wh)
    builder.handle_build_message(message({"dates": ["2025-03-01"]}), 1, resources)
    resources.readiness.versions[DAY] = InputVersions("c1", "u2")
    again = builder.handle_build_message(message({"start": "2025-03-01", "end": "2025-03-01"}), 1, resources)

    assert again is not None and again.plan.changed == (DAY,)


def test_the_quality_checks_get_the_rebuilt_dates(wh: DuckDBWarehouse, checks_run: list[list[dt.date]]) -> None:
    outcome = builder.handle_build_message(message({"dates": ["2025-03-01"]}), 1, make_resources(wh))

    assert outcome is not None
    assert checks_run == [[DAY]]


def test_failing_quality_checks_alert_but_keep_the_build(wh: DuckDBWarehouse, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("checks exploded")

    monkeypatch.setattr(quality, "run_checks", broken)
    resources = make_resources(wh)
    outcome = builder.handle_build_message(message({"dates": ["2025-03-01"]}), 1, resources)

    assert outcome is not None and outcome.rows_written == 1
    assert [a.title for a in resources.alerts.alerts] == ["Data-quality checks could not run after a build"]


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"\xff\xfe",
        message({"dates": ["2025-02-30"]}),
        message({"start": "2025-03-05", "end": "2025-03-01"}),
    ],
)
def test_malformed_message_is_alerted_and_dropped_without_raising(wh: DuckDBWarehouse, body: bytes) -> None:
    resources = make_resources(wh)
    assert builder.handle_build_message(body, 1, resources) is None

    [alert] = resources.alerts.alerts
    assert alert.title == "Malformed build message rejected" and alert.severity == "error"
    assert runs(wh) == []
    assert wh.run_sql("SELECT COUNT(*) AS n FROM analytics.company_daily_activity") == [{"n": 0}]


def test_failed_build_is_raised_for_retry_without_poison_alert_before_the_last_delivery() -> None:
    wh = FailingWarehouse(":memory:")
    wh.apply_schema()
    resources = make_resources(wh)
    with pytest.raises(BuildError):
        builder.handle_build_message(message({"dates": ["2025-03-01"]}), 1, resources)

    assert resources.alerts.alerts == []
    assert runs(wh) == [
        {"step": "build", "run_date": DAY, "status": "failed", "rows_out": None, "error_type": "BuildError"}
    ]
    # The transaction rolled back: no version was recorded, so the retry builds again.
    assert wh.run_sql("SELECT COUNT(*) AS n FROM ops.date_builds") == [{"n": 0}]


def test_failed_build_on_the_last_delivery_alerts_moved_to_poison_then_raises() -> None:
    wh = FailingWarehouse(":memory:")
    wh.apply_schema()
    resources = make_resources(wh)
    last = queue_config().max_dequeue_count
    with pytest.raises(BuildError):
        builder.handle_build_message(message({"dates": ["2025-03-01"]}), last, resources)

    [alert] = resources.alerts.alerts
    assert alert.title == "Build message moved to poison"
    assert alert.date == DAY and alert.facts["dequeue_count"] == str(last)


def test_services_entry_point_runs_the_quality_checks(wh: DuckDBWarehouse, checks_run: list[list[dt.date]]) -> None:
    resources = Resources(
        Settings(), warehouse=wh, readiness=FakeVersions({DAY: InputVersions("c1", "u1")}), alerts=RecordingAlertSink()
    )
    outcome = resources.handle_build_message(message({"dates": ["2025-03-01"]}), 1)

    assert outcome is not None and outcome.rows_written == 1
    assert checks_run == [[DAY]]


def test_a_redelivery_after_a_crash_between_the_build_and_its_checks_runs_the_checks(
    wh: DuckDBWarehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt  # the worker stopped after the build committed, before the checks

    checked: list[list[dt.date]] = []

    def checks(warehouse: DuckDBWarehouse, dates: Sequence[dt.date], *args: Any, **kwargs: Any) -> None:
        checked.append(list(dates))
        REAL_CHECKS(warehouse, dates, *args, **kwargs)

    resources = make_resources(wh)
    monkeypatch.setattr(quality, "run_checks", crash)
    with pytest.raises(KeyboardInterrupt):
        builder.handle_build_message(message({"dates": ["2025-03-01"]}), 1, resources)
    assert builder.dates_built_without_checks(wh, [DAY]) == [DAY]

    monkeypatch.setattr(quality, "run_checks", checks)
    again = builder.handle_build_message(message({"dates": ["2025-03-01"]}), 2, resources)
    assert again is not None and again.skipped, "the build itself is current"
    assert checked == [[DAY]]
    assert builder.dates_built_without_checks(wh, [DAY]) == []

    builder.handle_build_message(message({"dates": ["2025-03-01"]}), 1, resources)
    assert checked == [[DAY]], "checked dates are not checked again"
