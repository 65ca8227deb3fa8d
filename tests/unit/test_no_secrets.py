"""A configured API key, SQL password, storage key and webhook URL never reach an alert body,
a log line or the ops tables, whatever the failing step's error message contains.

Alerts go through the real webhook sink to a real HTTP receiver on 127.0.0.1 (the bytes on
the wire are searched), logs are captured with caplog (its formatter does no redaction of its
own, so the messages themselves must be clean) and the failed step's ops row is read back.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from shared.adapters.warehouse.duckdb_engine import DuckDBWarehouse
from shared.adapters.webhook import WebhookAlertSink
from shared.errors import AuthenticationFailed, BuildError, WarehouseTransientError
from shared.services.alerts import LogAlertSink, failure_alert
from shared.services.quality import checks_named, run_checks
from shared.services.run_history import recent_runs, record_run
from shared.settings import Settings

API_KEY = "uk_live_7Hq2ZfA9xW3pLm5N"
SQL_PASSWORD = "Tr0ub4dor;&3-horse}"  # ';' and '}' inside: ODBC quotes it as {Tr0ub4dor;&3-horse}}}
STORAGE_KEY = "c3RvcmFnZS1hY2NvdW50LWtleS1ub3QtcmVhbA=="
SQL_CONNECTION = (
    "Driver={ODBC Driver 18 for SQL Server};Server=tcp:example.database.windows.net,1433;"
    "Database=analytics;Uid=pipeline;Pwd={Tr0ub4dor;&3-horse}}};Encrypt=yes;"
)
STORAGE_CONNECTION = (
    f"DefaultEndpointsProtocol=https;AccountName=examplestore;AccountKey={STORAGE_KEY};EndpointSuffix=core.windows.net"
)


class RawReceiver:
    """Keeps the raw bytes of every POST; answers 500 to the first ``failures`` requests."""

    def __init__(self, failures: int = 0) -> None:
        self.raw: list[bytes] = []
        self.failures = failures
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver.raw.append(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                status = 500 if receiver.failures > 0 else 200
                receiver.failures -= 1
                self.send_response(status)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhookb2/incoming-hook-SECRET-TOKEN-9f8e7d"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[RawReceiver]:
    running = RawReceiver()
    yield running
    running.close()


@pytest.fixture
def settings(receiver: RawReceiver) -> Settings:
    return Settings.from_values(
        {
            "USAGE_API_KEY": API_KEY,
            "AZURE_SQL_CONNECTION_STRING": SQL_CONNECTION,
            "PIPELINE_STORAGE": STORAGE_CONNECTION,
            "ALERT_WEBHOOK_URL": receiver.url,
            "ALERT_DEDUP_MINUTES": "0",
        }
    )


def secrets(receiver: RawReceiver) -> list[str]:
    path = receiver.url.split("/", 3)[3]
    return [API_KEY, SQL_PASSWORD, "Tr0ub4dor", STORAGE_KEY, receiver.url, path, "SECRET-TOKEN"]


def leaking_errors() -> list[Exception]:
    """Errors whose text carries secrets the way real libraries' errors do."""
    return [
        AuthenticationFailed(f"GET /v1/usage/daily answered 401 for Authorization: Bearer {API_KEY}"),
        AuthenticationFailed(f"api_key={API_KEY} rejected"),
        WarehouseTransientError(f"login timeout connecting with {SQL_CONNECTION}"),
        BuildError(f"login failed for user 'pipeline' with password '{SQL_PASSWORD}'"),
        BuildError(f"blob upload failed: {STORAGE_CONNECTION}"),
        RuntimeError(f"unexpected: key {API_KEY} and password {SQL_PASSWORD}"),
    ]


def assert_clean(text: str, receiver: RawReceiver) -> None:
    for secret in secrets(receiver):
        assert secret not in text, f"a secret leaked: …{secret[-6:]}"


def test_alert_bodies_on_the_wire_carry_no_secret(settings: Settings, receiver: RawReceiver) -> None:
    sink = WebhookAlertSink.from_settings(settings)
    for error in leaking_errors():
        sink.send(failure_alert(settings.pipeline_name, "usage", error, "run-1", dt.date(2025, 3, 10)))
    assert len(receiver.raw) == len(leaking_errors())
    for body in receiver.raw:
        assert_clean(body.decode("utf-8"), receiver)
    assert "401" in receiver.raw[0].decode()  # the useful part of the message survives


def test_log_lines_carry_no_secret(settings: Settings, receiver: RawReceiver, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    receiver.failures = 100  # every delivery fails: the sink logs why
    sink = WebhookAlertSink(receiver.url, timeout=1, retries=1, backoff_s=0.01)
    for error in leaking_errors():
        alert = failure_alert(settings.pipeline_name, "build", error, "run-2", dt.date(2025, 3, 10))
        sink.send(alert)
        LogAlertSink().send(alert)
    assert caplog.records
    every_level = caplog.text + " ".join(str(r.args) for r in caplog.records)
    for secret in (API_KEY, SQL_PASSWORD, "Tr0ub4dor", STORAGE_KEY):
        assert secret not in every_level
    # urllib3 logs request paths at DEBUG (a webhook's token is in its path); at INFO and
    # above, where the pipeline logs, the webhook URL never appears either.
    info_and_above = "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.INFO)
    assert_clean(info_and_above, receiver)


def test_a_connection_string_is_masked_whole(settings: Settings) -> None:
    from shared.logs import redact

    assert "example.database.windows.net" not in redact(f"connect failed: {SQL_CONNECTION}")


def test_a_failed_step_row_in_ops_carries_no_secret(
    settings: Settings, receiver: RawReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    warehouse = DuckDBWarehouse(":memory:")
    warehouse.apply_schema()
    for index, error in enumerate(leaking_errors()):
        with pytest.raises(type(error)), record_run(warehouse, step="usage", run_id=f"run-{index}"):
            raise error
    rows = recent_runs(warehouse, limit=100)
    assert {r["status"] for r in rows} == {"failed"}
    assert_clean(repr(rows), receiver)
    assert_clean(caplog.text, receiver)


def test_quality_alerts_and_results_carry_no_secret(settings: Settings, receiver: RawReceiver) -> None:
    warehouse = DuckDBWarehouse(":memory:")
    warehouse.apply_schema()
    sink = WebhookAlertSink.from_settings(settings)
    run_checks(warehouse, [dt.date(2025, 3, 10)], "run-q", dt.datetime(2025, 3, 14), settings, sink)
    assert receiver.raw  # no rows and no inputs: checks fail and alert
    for body in receiver.raw:
        assert_clean(body.decode("utf-8"), receiver)
    results = warehouse.run_sql("SELECT * FROM ops.data_quality_results")
    assert_clean(repr(results), receiver)


def test_checks_named_is_available_for_the_timer() -> None:
    assert [c.name for c in checks_named("input_freshness")] == ["input_freshness"]
