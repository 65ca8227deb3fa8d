"""WebhookAlertSink against a real local HTTP receiver (127.0.0.1, a free port).

Payload shape, retries on 5xx and timeouts, no retry on 4xx, de-duplication within a process
and across processes (claims in the state table on Azurite), and that a failing webhook never
raises into the step that sent the alert.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from shared.adapters.table_state import StateTable
from shared.adapters.webhook import InMemoryAlertDedup, TableAlertDedup, WebhookAlertSink
from shared.services.alert_deliveries import RecordedAlertSink
from shared.services.alerts import Alert
from shared.settings import Settings
from shared.wiring import Resources

pytestmark = pytest.mark.integration


class Receiver:
    """Records every POST; answers with scripted status codes (then 200), optionally slowly."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.content_types: list[str] = []
        self.statuses: list[int] = []
        self.delay_s = 0.0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                with receiver._lock:
                    receiver.bodies.append(body)
                    receiver.content_types.append(self.headers.get("Content-Type", ""))
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                    delay = receiver.delay_s
                time.sleep(delay)
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok" if status == 200 else b"error")

            def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T000/B000/secret-path-token"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


def an_alert(date: dt.date = dt.date(2025, 3, 10), title: str = "build failed: BuildError") -> Alert:
    return Alert(
        pipeline="company-activity",
        step="build",
        severity="error",
        title=title,
        message="statement 3 failed",
        run_id="run-77",
        date=date,
        facts={"Error type": "BuildError"},
    )


def sink_for(receiver: Receiver, **options: Any) -> WebhookAlertSink:
    options.setdefault("timeout", 2.0)
    options.setdefault("backoff_s", 0.01)
    return WebhookAlertSink(receiver.url, **options)


def test_alert_arrives_as_a_json_message_card_with_pipeline_step_date_run_and_link(receiver: Receiver) -> None:
    sink_for(receiver, run_link_template="https://logs.example/runs/{run_id}").send(an_alert())
    (body,) = receiver.bodies
    assert receiver.content_types == ["application/json"]
    assert body["@type"] == "MessageCard"
    assert body["title"] == "[ERROR] company-activity: build failed: BuildError"
    facts = {f["name"]: f["value"] for f in body["sections"][0]["facts"]}
    assert facts["Pipeline"] == "company-activity"
    assert facts["Step"] == "build"
    assert facts["Date"] == "2025-03-10"
    assert facts["Run id"] == "run-77"
    assert facts["Error type"] == "BuildError"
    assert facts["Run"] == "https://logs.example/runs/run-77"
    assert "statement 3 failed" in body["text"]
    assert "Run id: run-77" in body["text"]


def test_without_a_link_template_the_alert_names_the_ops_row(receiver: Receiver) -> None:
    sink_for(receiver).send(an_alert())
    assert "Run: ops.pipeline_runs run_id=run-77" in receiver.bodies[0]["text"]


def test_a_500_is_retried_until_the_webhook_accepts(receiver: Receiver) -> None:
    receiver.statuses = [500, 503]
    sink_for(receiver, retries=2).send(an_alert())
    assert len(receiver.bodies) == 3
    assert receiver.bodies[0] == receiver.bodies[2]  # the same body every attempt


def test_a_400_is_not_retried_and_does_not_raise(receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    receiver.statuses = [400]
    sink_for(receiver, retries=3).send(an_alert())
    assert len(receiver.bodies) == 1
    assert "webhook answered HTTP 400" in caplog.text


def test_a_webhook_that_keeps_failing_is_logged_not_raised_and_can_alert_again_later(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.statuses = [500, 500, 500]
    sink = sink_for(receiver, retries=2)
    sink.send(an_alert())  # must not raise
    assert len(receiver.bodies) == 3
    assert "not delivered to the webhook at 127.0.0.1 after 3 attempt(s)" in caplog.text
    assert "secret-path-token" not in caplog.text
    sink.send(an_alert())  # the failed delivery did not use up the de-duplication window
    assert len(receiver.bodies) == 4


def test_a_slow_webhook_times_out_and_is_retried(receiver: Receiver) -> None:
    receiver.delay_s = 0.6
    started = time.monotonic()
    sink_for(receiver, timeout=0.2, retries=1).send(an_alert())
    assert len(receiver.bodies) == 2
    assert time.monotonic() - started < 3


def test_an_unreachable_webhook_does_not_raise(caplog: pytest.LogCaptureFixture) -> None:
    with Receiver() as closed:
        url = closed.url
    WebhookAlertSink(url, timeout=0.5, retries=1, backoff_s=0.01).send(an_alert())
    assert "ConnectionError" in caplog.text
    assert "secret-path-token" not in caplog.text


def test_the_same_failure_alerts_once_per_window_and_other_dates_alert_separately(receiver: Receiver) -> None:
    sink = sink_for(receiver, dedup=InMemoryAlertDedup())
    for _ in range(3):
        sink.send(an_alert())
    sink.send(an_alert(date=dt.date(2025, 3, 11)))
    sink.send(an_alert(title="build failed: TranslationError"))
    assert [(b["sections"][0]["facts"][2]["value"], b["title"]) for b in receiver.bodies] == [
        ("2025-03-10", "[ERROR] company-activity: build failed: BuildError"),
        ("2025-03-11", "[ERROR] company-activity: build failed: BuildError"),
        ("2025-03-10", "[ERROR] company-activity: build failed: TranslationError"),
    ]


def test_the_window_reopens_after_alert_dedup_minutes(receiver: Receiver) -> None:
    now = [dt.datetime(2025, 3, 11, 1, 0)]
    sink = sink_for(receiver, dedup_window=dt.timedelta(minutes=60), clock=lambda: now[0])
    sink.send(an_alert())
    now[0] += dt.timedelta(minutes=59)
    sink.send(an_alert())
    now[0] += dt.timedelta(minutes=1)
    sink.send(an_alert())
    assert len(receiver.bodies) == 2


def test_dedup_holds_across_processes_through_the_state_table(receiver: Receiver, storage_settings: Settings) -> None:
    # Two sinks with their own dedup objects and table clients: what two worker processes have.
    first = sink_for(receiver, dedup=TableAlertDedup(lambda: StateTable.from_settings(storage_settings)))
    second = sink_for(receiver, dedup=TableAlertDedup(lambda: StateTable.from_settings(storage_settings)))
    first.send(an_alert())
    second.send(an_alert())
    first.send(an_alert())
    assert len(receiver.bodies) == 1
    claims = StateTable.from_settings(storage_settings).query("alert_dedup")
    assert [c["alert_key"] for c in claims] == ["company-activity|build|2025-03-10||build failed: BuildError"]


def test_wiring_builds_the_webhook_sink_with_settings_and_table_dedup(
    receiver: Receiver, make_storage_settings: Any
) -> None:
    settings = make_storage_settings(ALERT_WEBHOOK_URL=receiver.url, ALERT_TIMEOUT_S="1.5", ALERT_DEDUP_MINUTES="30")
    recorded = Resources(settings).alerts
    assert isinstance(recorded, RecordedAlertSink)
    sink = recorded.inner
    assert isinstance(sink, WebhookAlertSink)
    assert (sink.timeout, sink.dedup_window) == (1.5, dt.timedelta(minutes=30))
    assert isinstance(sink.dedup, TableAlertDedup)
    sink.send(an_alert())
    Resources(settings).alerts.send(an_alert())  # a second process: suppressed by the table claim
    assert len(receiver.bodies) == 1
