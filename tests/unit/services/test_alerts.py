"""Alert building blocks: failure alerts, de-duplication, payload shapes, safe sending."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from shared.adapters.webhook import (
    DEDUP_PARTITION,
    InMemoryAlertDedup,
    TableAlertDedup,
    build_payload,
    detect_format,
    run_link,
)
from shared.errors import (
    AuthenticationFailed,
    ConcurrencyConflict,
    CrmFileRejected,
    UpstreamUnavailable,
)
from shared.services.alerts import (
    Alert,
    DedupingAlertSink,
    RecordingAlertSink,
    failure_alert,
    new_alert,
    send_safely,
)
from tests.fakes import InMemoryStateTable

T0 = dt.datetime(2025, 3, 11, 1, 0)
HOUR = dt.timedelta(hours=1)


def test_an_alert_has_a_date_only_when_it_is_about_exactly_one() -> None:
    one = new_alert("p", "build", "error", "t", "m", run_id="r", dates=[dt.date(2025, 3, 1)], subject="s")
    many = new_alert("p", "build", "error", "t", "m", run_id="r", dates=[dt.date(2025, 3, 1), dt.date(2025, 3, 2)])
    assert (one.pipeline, one.step, one.run_id, one.date, one.subject) == ("p", "build", "r", dt.date(2025, 3, 1), "s")
    assert many.date is None and new_alert("p", "build", "error", "t", "m").date is None


def an_alert(title: str = "usage failed: AuthenticationFailed", date: dt.date | None = dt.date(2025, 3, 10)) -> Alert:
    return Alert(
        pipeline="company-activity",
        step="usage",
        severity="error",
        title=title,
        message="the API answered 401",
        run_id="run-42",
        date=date,
        facts={"Error type": "AuthenticationFailed"},
    )


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


# ---- failure_alert ----------------------------------------------------------------------------
def test_failure_alert_names_step_error_type_run_and_date() -> None:
    alert = failure_alert(
        "company-activity", "usage", AuthenticationFailed("401 from API"), "run-1", dt.date(2025, 1, 2)
    )
    assert alert.title == "usage failed: AuthenticationFailed"
    assert (alert.severity, alert.run_id, alert.date) == ("error", "run-1", dt.date(2025, 1, 2))
    assert alert.facts == {"Error type": "AuthenticationFailed", "Error kind": "permanent (not retried)"}


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (UpstreamUnavailable("503"), "transient (retried by the host)"),
        (CrmFileRejected("missing column"), "rejected input"),
        (ValueError("boom"), "error"),
    ],
)
def test_failure_alert_kind_comes_from_the_error_type(error: Exception, kind: str) -> None:
    assert failure_alert("p", "s", error).facts["Error kind"] == kind


def test_the_same_failure_with_different_messages_has_one_dedup_key() -> None:
    first = failure_alert("p", "build", UpstreamUnavailable("attempt 1 timed out"), "r1", dt.date(2025, 1, 2))
    second = failure_alert("p", "build", UpstreamUnavailable("attempt 2 reset"), "r2", dt.date(2025, 1, 2))
    assert first.dedup_key() == second.dedup_key()


# ---- de-duplication ---------------------------------------------------------------------------
def test_in_memory_dedup_allows_once_per_window_then_again() -> None:
    dedup = InMemoryAlertDedup()
    assert dedup.claim("k", T0, HOUR)
    assert not dedup.claim("k", T0 + dt.timedelta(minutes=59), HOUR)
    assert dedup.claim("k", T0 + HOUR, HOUR)
    assert dedup.claim("other", T0, HOUR)


def test_released_claims_can_be_taken_again() -> None:
    dedup = InMemoryAlertDedup()
    dedup.claim("k", T0, HOUR)
    dedup.release("k")
    assert dedup.claim("k", T0, HOUR)


def test_deduping_sink_passes_the_same_failure_once_per_window() -> None:
    inner = RecordingAlertSink()
    clock = Clock(T0)
    sink = DedupingAlertSink(inner, window=HOUR, clock=clock)
    for _ in range(3):
        sink.send(an_alert())
    sink.send(an_alert(date=dt.date(2025, 3, 9)))  # another date: another failure
    clock.now = T0 + HOUR
    sink.send(an_alert())
    assert [a.date for a in inner.alerts] == [dt.date(2025, 3, 10), dt.date(2025, 3, 9), dt.date(2025, 3, 10)]


def test_deduping_sink_with_a_zero_window_passes_everything() -> None:
    inner = RecordingAlertSink()
    sink = DedupingAlertSink(inner, window=dt.timedelta(0))
    sink.send(an_alert())
    sink.send(an_alert())
    assert len(inner.alerts) == 2


def test_deduping_sink_releases_its_claim_when_the_inner_sink_fails() -> None:
    class FailsOnce:
        def __init__(self) -> None:
            self.calls = 0

        def send(self, alert: Alert) -> None:
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("down")

    inner = FailsOnce()
    sink = DedupingAlertSink(inner, window=HOUR, clock=Clock(T0))
    with pytest.raises(RuntimeError):
        sink.send(an_alert())
    sink.send(an_alert())
    assert inner.calls == 2


def test_table_dedup_is_shared_by_every_process_using_the_table() -> None:
    table = InMemoryStateTable()
    first_process, second_process = TableAlertDedup(lambda: table), TableAlertDedup(lambda: table)
    assert first_process.claim("k", T0, HOUR)
    assert not second_process.claim("k", T0 + dt.timedelta(minutes=5), HOUR)
    assert second_process.claim("k", T0 + HOUR, HOUR)
    ((pk, _),) = table.rows
    assert pk == DEDUP_PARTITION


def test_table_dedup_loses_a_race_gracefully() -> None:
    class RacingTable(InMemoryStateTable):
        def insert(self, entity: dict[str, Any]) -> str:
            raise ConcurrencyConflict("another process inserted first")

    assert not TableAlertDedup(RacingTable).claim("k", T0, HOUR)


def test_table_dedup_falls_back_to_memory_when_the_table_is_unreachable() -> None:
    def unreachable() -> Any:
        raise ConnectionError("no storage")

    dedup = TableAlertDedup(unreachable)
    assert dedup.claim("k", T0, HOUR)
    assert not dedup.claim("k", T0, HOUR)


# ---- payloads ---------------------------------------------------------------------------------
def test_message_card_payload_carries_every_fact_for_teams_and_slack() -> None:
    payload = build_payload(an_alert(), "https://portal.example/runs/run-42")
    assert payload["@type"] == "MessageCard"
    assert payload["summary"] == payload["title"] == "[ERROR] company-activity: usage failed: AuthenticationFailed"
    facts = {f["name"]: f["value"] for f in payload["sections"][0]["facts"]}
    assert facts == {
        "Pipeline": "company-activity",
        "Step": "usage",
        "Date": "2025-03-10",
        "Run id": "run-42",
        "Severity": "error",
        "Error type": "AuthenticationFailed",
        "Run": "https://portal.example/runs/run-42",
    }
    # Slack reads only `text`: it must hold the message and the same facts.
    for name, value in facts.items():
        assert f"{name}: {value}" in payload["text"]
    assert payload["potentialAction"][0]["targets"][0]["uri"] == "https://portal.example/runs/run-42"
    json.dumps(payload)  # serialisable as is


def test_adaptive_card_payload_for_teams_workflows() -> None:
    payload = build_payload(an_alert(), "ops.pipeline_runs run_id=run-42", "adaptive_card")
    (attachment,) = payload["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard"
    fact_set = next(block for block in card["body"] if block["type"] == "FactSet")
    assert {"title": "Run id", "value": "run-42"} in fact_set["facts"]
    assert "actions" not in card  # the fallback link is not a URL


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://hooks.slack.com/services/T0/B0/XYZ", "message_card"),
        ("https://contoso.webhook.office.com/webhookb2/abc", "message_card"),
        ("https://prod-01.westeurope.logic.azure.com:443/workflows/abc/triggers/manual/paths/invoke", "adaptive_card"),
        ("https://default1.environment.api.powerplatform.com/powerautomate/automations/x", "adaptive_card"),
    ],
)
def test_payload_format_follows_the_webhook_host(url: str, expected: str) -> None:
    assert detect_format(url) == expected


def test_run_link_uses_the_template_or_names_the_ops_row() -> None:
    assert run_link("r 1", "https://logs.example/?q={run_id}") == "https://logs.example/?q=r%201"
    assert run_link("r1", "") == "ops.pipeline_runs run_id=r1"


# ---- sending ----------------------------------------------------------------------------------
def test_send_safely_swallows_and_logs_a_failing_sink(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def send(self, alert: Alert) -> None:
            raise RuntimeError("sink down")

    send_safely(Broken(), an_alert())
    assert "could not be sent (RuntimeError)" in caplog.text


def test_recording_sink_keeps_redacted_alerts() -> None:
    from shared.logs import register_secret

    register_secret("s3cr3t-value-for-recording")
    sink = RecordingAlertSink()
    sink.send(Alert("p", "s", "error", "t", "token s3cr3t-value-for-recording leaked"))
    assert "s3cr3t" not in sink.alerts[0].message
