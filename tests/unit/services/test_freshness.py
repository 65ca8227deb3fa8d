"""Freshness on the timer's schedule, against DuckDB: a missing input alerts once per (date,
input), never again on the next tick, and a resolved notice follows its arrival."""

from __future__ import annotations

import datetime as dt

import pytest

from shared.adapters.warehouse.duckdb_engine import DuckDBWarehouse
from shared.services.alerts import Alert, RecordingAlertSink
from shared.services.freshness import evaluate_freshness
from shared.settings import Settings

SETTINGS = Settings(FRESHNESS_LOOKBACK_DAYS=3, FRESHNESS_DEADLINE_HOURS=30)
# Yesterday is 03-09; 03-07..03-09 are evaluated. 03-07 and 03-08 are past their deadline
# (03-08 ends 03-09 00:00, +30 h = 03-10 06:00), 03-09 is not.
TICK = dt.datetime(2025, 3, 10, 7, 0)
DAYS = [dt.date(2025, 3, 7), dt.date(2025, 3, 8), dt.date(2025, 3, 9)]


def stage_crm(wh: DuckDBWarehouse, day: dt.date, at: dt.datetime) -> None:
    wh.run_sql("INSERT INTO stg.crm_snapshots VALUES (@d, 'crm/x.csv', 'h', 1, 0, 0, @at, 'r')", {"d": day, "at": at})


def stage_usage(wh: DuckDBWarehouse, day: dt.date, at: dt.datetime) -> None:
    wh.run_sql(
        "INSERT INTO stg.usage_pulls VALUES (@d, 'raw', 'h', 1, 1, 1, 0, 0, 0, @at, @at, 'r')", {"d": day, "at": at}
    )


def stored(wh: DuckDBWarehouse) -> dict[tuple[str, str], dict]:
    rows = wh.run_sql("SELECT * FROM ops.input_freshness")
    return {(r["activity_date"].isoformat(), r["input_name"]): r for r in rows}


@pytest.fixture
def staged_but_crm_of_the_8th(warehouse: DuckDBWarehouse) -> DuckDBWarehouse:
    for day in DAYS:
        stage_usage(warehouse, day, dt.datetime.combine(day, dt.time(23)) + dt.timedelta(hours=2))
        if day != DAYS[1]:
            stage_crm(warehouse, day, dt.datetime.combine(day, dt.time(23)))
    return warehouse


def test_a_missing_crm_file_alerts_once_and_not_on_the_next_tick(staged_but_crm_of_the_8th: DuckDBWarehouse) -> None:
    wh, alerts = staged_but_crm_of_the_8th, RecordingAlertSink()
    evaluate_freshness(wh, alerts, SETTINGS, TICK, run_id="tick-1")
    [alert] = alerts.alerts
    assert (alert.step, alert.subject, alert.date, alert.severity) == ("freshness", "crm", DAYS[1], "error")
    row = stored(wh)[("2025-03-08", "crm")]
    assert (row["status"], row["first_missed_at"], row["alerted_at"], row["resolved_at"]) == (
        "missing",
        TICK,
        TICK,
        None,
    )
    assert {k: r["status"] for k, r in stored(wh).items() if k != ("2025-03-08", "crm")} == {
        ("2025-03-07", "crm"): "on_time",
        ("2025-03-07", "usage"): "on_time",
        ("2025-03-08", "usage"): "on_time",
        ("2025-03-09", "crm"): "on_time",
        ("2025-03-09", "usage"): "on_time",
    }

    evaluate_freshness(wh, alerts, SETTINGS, TICK + dt.timedelta(hours=1), run_id="tick-2")
    evaluate_freshness(wh, alerts, SETTINGS, TICK + dt.timedelta(days=1), run_id="tick-3")
    assert len(alerts.alerts) == 1
    assert stored(wh)[("2025-03-08", "crm")]["first_missed_at"] == TICK


def test_the_input_arriving_resolves_the_miss_with_one_notice(staged_but_crm_of_the_8th: DuckDBWarehouse) -> None:
    wh, alerts = staged_but_crm_of_the_8th, RecordingAlertSink()
    evaluate_freshness(wh, alerts, SETTINGS, TICK)
    arrived = TICK + dt.timedelta(hours=2)
    stage_crm(wh, DAYS[1], arrived)
    evaluate_freshness(wh, alerts, SETTINGS, arrived + dt.timedelta(minutes=5))
    evaluate_freshness(wh, alerts, SETTINGS, arrived + dt.timedelta(hours=1))
    assert [(a.severity, a.subject, a.date) for a in alerts.alerts] == [
        ("error", "crm", DAYS[1]),
        ("info", "crm", DAYS[1]),
    ]
    row = stored(wh)[("2025-03-08", "crm")]
    assert (row["status"], row["arrived_at"], row["resolved_at"]) == (
        "late",
        arrived,
        arrived + dt.timedelta(minutes=5),
    )


def test_an_outage_of_several_days_is_one_alert_per_input(warehouse: DuckDBWarehouse) -> None:
    alerts = RecordingAlertSink()
    stage_usage(warehouse, dt.date(2025, 3, 6), TICK)  # the pipeline ran before the outage
    evaluate_freshness(warehouse, alerts, SETTINGS, TICK)
    assert sorted((a.subject, a.date, a.facts["Dates"]) for a in alerts.alerts) == [
        ("crm", None, "2025-03-07, 2025-03-08"),
        ("usage", None, "2025-03-07, 2025-03-08"),
    ]
    assert stored(warehouse)[("2025-03-09", "usage")]["status"] == "waiting"


class FailingOnce:
    def __init__(self) -> None:
        self.calls, self.alerts = 0, []

    def send(self, alert: Alert) -> None:
        self.calls += 1
        if self.calls == 1:
            raise ConnectionError("webhook down")
        self.alerts.append(alert)


def test_an_alert_that_could_not_be_sent_is_sent_by_the_next_tick(staged_but_crm_of_the_8th: DuckDBWarehouse) -> None:
    wh, alerts = staged_but_crm_of_the_8th, FailingOnce()
    evaluate_freshness(wh, alerts, SETTINGS, TICK)
    assert stored(wh)[("2025-03-08", "crm")]["alerted_at"] is None
    evaluate_freshness(wh, alerts, SETTINGS, TICK + dt.timedelta(hours=1))
    evaluate_freshness(wh, alerts, SETTINGS, TICK + dt.timedelta(hours=2))
    assert [a.subject for a in alerts.alerts] == ["crm"]
    assert stored(wh)[("2025-03-08", "crm")]["alerted_at"] == TICK + dt.timedelta(hours=1)


def test_days_before_the_first_input_ever_are_not_evaluated(warehouse: DuckDBWarehouse) -> None:
    alerts = RecordingAlertSink()
    assert evaluate_freshness(warehouse, alerts, SETTINGS, TICK) == []  # a new deployment
    stage_usage(warehouse, DAYS[1], TICK)
    states = evaluate_freshness(warehouse, alerts, SETTINGS, TICK)
    assert sorted({s.activity_date for s in states}) == DAYS[1:]
    assert [(a.subject, a.date) for a in alerts.alerts] == [("crm", DAYS[1])]
