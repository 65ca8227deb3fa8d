"""Alert deliveries recorded in ops.alert_deliveries, and failed ones retried (DuckDB + a real
local webhook receiver whose answer the test chooses)."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from shared.adapters.warehouse.duckdb_engine import DuckDBWarehouse
from shared.adapters.webhook import WebhookAlertSink
from shared.errors import BuildError
from shared.services.alert_deliveries import RecordedAlertSink, recent_deliveries, retry_failed_deliveries
from shared.services.alerts import Alert, LogAlertSink

NOW = dt.datetime(2025, 12, 1, 6, 0)
LATER = NOW + dt.timedelta(minutes=5)


class Receiver:
    """A webhook on 127.0.0.1 that answers ``status`` and keeps what it received."""

    def __init__(self) -> None:
        self.status = 200
        self.bodies: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                receiver.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook/secret-path"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.stop()


def an_alert(title: str = "build failed: BuildError") -> Alert:
    return Alert(
        pipeline="company-activity",
        step="build",
        severity="error",
        title=title,
        message="the warehouse said no",
        run_id="run-1",
        date=dt.date(2025, 11, 30),
        facts={"Error type": "BuildError"},
        subject="msg-42",
    )


def webhook(receiver: Receiver) -> WebhookAlertSink:
    return WebhookAlertSink(receiver.url, timeout=2, retries=1, backoff_s=0)


def deliveries(warehouse: DuckDBWarehouse) -> list[dict[str, Any]]:
    return warehouse.run_sql(
        "SELECT status, attempts, last_error_type, title, subject, alert_date FROM ops.alert_deliveries ORDER BY title"
    )


def test_each_send_is_recorded_with_its_status(receiver: Receiver, warehouse: DuckDBWarehouse) -> None:
    sink = RecordedAlertSink(webhook(receiver), lambda: warehouse, clock=lambda: NOW)

    sink.send(an_alert())
    sink.send(an_alert())  # the same incident again: suppressed by the de-duplication window

    rows = recent_deliveries(warehouse)
    assert sorted(r["status"] for r in rows) == ["sent", "suppressed"]
    assert {(r["title"], r["subject"], r["alert_date"]) for r in rows} == {
        ("build failed: BuildError", "msg-42", dt.date(2025, 11, 30))
    }
    assert len(receiver.bodies) == 1


def test_without_a_webhook_the_alert_is_recorded_as_log_only(warehouse: DuckDBWarehouse) -> None:
    RecordedAlertSink(LogAlertSink(), lambda: warehouse, clock=lambda: NOW).send(an_alert())

    assert [r["status"] for r in deliveries(warehouse)] == ["log_only"]


def test_a_failed_delivery_is_recorded_then_retried_until_sent(receiver: Receiver, warehouse: DuckDBWarehouse) -> None:
    sink = RecordedAlertSink(webhook(receiver), lambda: warehouse, clock=lambda: NOW)
    receiver.status = 500

    sink.send(an_alert())

    assert deliveries(warehouse)[0] | {"title": None} == {
        "status": "failed",
        "attempts": 1,
        "last_error_type": "UpstreamUnavailable",
        "title": None,
        "subject": "msg-42",
        "alert_date": dt.date(2025, 11, 30),
    }
    assert len(receiver.bodies) == 2  # the webhook's own bounded retries

    still_down = retry_failed_deliveries(warehouse, sink, max_attempts=5, now=LATER)
    assert (still_down.tried, still_down.failed) == (1, 1)
    assert deliveries(warehouse)[0]["attempts"] == 2

    receiver.status = 200
    back = retry_failed_deliveries(warehouse, sink, max_attempts=5, now=LATER)

    assert (back.tried, back.sent) == (1, 1)
    assert [(r["status"], r["attempts"]) for r in deliveries(warehouse)] == [("sent", 3)]
    assert receiver.bodies[-1]["title"].endswith("build failed: BuildError")
    assert retry_failed_deliveries(warehouse, sink, max_attempts=5, now=LATER).tried == 0


def test_retries_stop_after_max_attempts(receiver: Receiver, warehouse: DuckDBWarehouse) -> None:
    sink = RecordedAlertSink(webhook(receiver), lambda: warehouse, clock=lambda: NOW)
    receiver.status = 404  # a wrong URL: refused, not retried within the send

    sink.send(an_alert())
    retry_failed_deliveries(warehouse, sink, max_attempts=2, now=LATER)

    assert retry_failed_deliveries(warehouse, sink, max_attempts=2, now=LATER).tried == 0
    assert [(r["status"], r["attempts"], r["last_error_type"]) for r in deliveries(warehouse)] == [
        ("failed", 2, "WebhookRejected")
    ]


class DownWarehouse(DuckDBWarehouse):
    def run(self, name: str, params: Any = None) -> list[dict[str, Any]]:
        raise BuildError("warehouse unreachable")


def test_the_alert_goes_out_when_the_warehouse_is_down(receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    down = DownWarehouse(":memory:")
    calls: list[int] = []

    def connect() -> DuckDBWarehouse:
        calls.append(1)
        return down

    sink = RecordedAlertSink(webhook(receiver), connect, clock=lambda: NOW)

    result = sink.send(an_alert("build failed: WarehouseTransientError"))
    sink.send(an_alert("another failure"))

    assert result.status == "sent"
    assert len(receiver.bodies) == 2, "both alerts reached the webhook"
    assert len(calls) == 1, "after a failed record the warehouse is left alone for a while"
    assert "not recorded in ops (BuildError)" in caplog.text
