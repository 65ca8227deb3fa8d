"""Telemetry against real local HTTP servers (127.0.0.1, free ports): the Azure Monitor distro
really ships envelopes with run_id dimensions, and no URL secret reaches a span."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests

from shared import telemetry
from shared.adapters.webhook import WebhookAlertSink
from shared.logs import log_context, register_secret
from shared.services.alerts import Alert

if TYPE_CHECKING:
    from tests.conftest import OtelCapture

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TOKEN = "hook-token-5f2c9a17"


class Receiver:
    """Records every request body (gunzipped); answers 200 with an ingestion-style reply."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                receiver.requests.append((self.path, body))
                reply = json.dumps({"itemsReceived": 1, "itemsAccepted": 1, "errors": []}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            do_POST = do_GET = _record

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as server:
        yield server


def _texts(otel: OtelCapture) -> list[str]:
    texts = []
    for span in otel.spans():
        texts.append(span.name)
        texts.extend(str(v) for v in span.attributes.values())
        texts.extend(str(v) for event in span.events for v in event.attributes.values())
        texts.append(str(span.status.description))
    return texts


def test_a_webhook_post_is_a_span_that_names_no_url(otel: OtelCapture, receiver: Receiver) -> None:
    sink = WebhookAlertSink(f"{receiver.base}/services/T0/B0/{TOKEN}", retries=0)
    with telemetry.span("quality"):
        sink.send(Alert(pipeline="p", step="quality", severity="error", title="t", message="m"))
    assert len(receiver.requests) == 1
    [post] = [s for s in otel.spans() if s.name == "webhook.post"]
    assert post.attributes["http.response.status_code"] == 200
    assert post.attributes["server.address"] == "127.0.0.1"
    assert not [s for s in otel.spans() if s.name in ("POST", "GET")], "the HTTP instrumentation stays out"
    assert not [t for t in _texts(otel) if TOKEN in t]


def test_request_spans_and_recorded_errors_are_redacted(otel: OtelCapture, receiver: Receiver) -> None:
    register_secret("registered-secret-77d1")
    requests.get(f"{receiver.base}/v1/usage/daily?date=2025-03-09&sig=sas-signature-31&code=fn-key-92", timeout=5)
    with pytest.raises(RuntimeError), telemetry.span("step"):
        raise RuntimeError("could not connect with Password=hunter2-x and registered-secret-77d1")
    texts = _texts(otel)
    [get] = [s for s in otel.spans() if s.name == "GET"]
    assert "/v1/usage/daily" in str(get.attributes.get("http.url") or get.attributes.get("url.full"))
    leaked = [
        s
        for s in ("sas-signature-31", "fn-key-92", "hunter2-x", "registered-secret-77d1")
        if any(s in t for t in texts)
    ]
    assert not leaked
    [step] = [s for s in otel.spans() if s.name == "step"]
    assert step.events[0].attributes["exception.type"] == "RuntimeError"


def test_log_records_carry_the_run_context_as_dimensions(otel: OtelCapture) -> None:
    import logging

    with log_context(run_id="run-5", step="build", date="2025-03-09", function="build_requested"):
        logging.getLogger("shared.services.builder").info("built %d rows", 12)
    [record] = [r for r in otel.logs() if r.body == "built 12 rows"]
    attributes = dict(record.attributes)
    assert {k: attributes[k] for k in ("run_id", "step", "activity_date", "function")} == {
        "run_id": "run-5",
        "step": "build",
        "activity_date": "2025-03-09",
        "function": "build_requested",
    }


DISTRO_SCRIPT = """
import logging
from opentelemetry.trace import SpanKind
from shared import telemetry
from shared.logs import configure_logging, log_context
from shared.settings import Settings

settings = Settings(APPLICATIONINSIGHTS_CONNECTION_STRING=(
    "InstrumentationKey=00000000-0000-0000-0000-000000000001;IngestionEndpoint={endpoint}/"
))
mode = telemetry.configure_telemetry(settings, disable_offline_storage=True, enable_performance_counters=False)
configure_logging("INFO", stream=mode != "azure_monitor")
assert mode == "azure_monitor", mode
with log_context(run_id="run-distro-1", step="build", date="2025-03-09", function="build_requested"):
    with telemetry.span("build_requested", kind=SpanKind.SERVER):  # as Resources._invocation
        logging.getLogger("shared.services.builder").info("built 12 rows")
        telemetry.BUILD_SUCCEEDED.add(1)
telemetry.flush()
print("flushed")
"""


def test_the_distro_ships_envelopes_with_run_id_dimensions(receiver: Receiver, tmp_path: Path) -> None:
    script = tmp_path / "distro.py"
    script.write_text(textwrap.dedent(DISTRO_SCRIPT.format(endpoint=receiver.base)))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("APPLICATIONINSIGHTS", "OTEL_"))},
        "PYTHONPATH": str(REPO),
        # Nothing leaves the machine: no statsbeat to Microsoft, no Azure VM metadata probe.
        "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
        "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS": "otel",
    }
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and "flushed" in done.stdout, done.stderr[-2000:]
    envelopes = [
        envelope for path, body in receiver.requests if path.startswith("/v2.1/track") for envelope in json.loads(body)
    ]
    by_type = {}
    for envelope in envelopes:
        by_type.setdefault(envelope["data"]["baseType"], []).append(envelope["data"]["baseData"])
    [request] = [r for r in by_type["RequestData"] if r["name"] == "build_requested"]
    assert request["properties"]["run_id"] == "run-distro-1"
    [message] = [m for m in by_type["MessageData"] if m["message"] == "built 12 rows"]
    assert message["properties"]["run_id"] == "run-distro-1"
    assert message["properties"]["activity_date"] == "2025-03-09"
    metrics = [m for data in by_type["MetricData"] for m in data["metrics"]]
    assert any(m["name"] == "pipeline.build.succeeded" and m["value"] == 1 for m in metrics)


def test_api_metrics_count_what_the_api_saw(otel: OtelCapture) -> None:
    import datetime as dt

    from pipeline_tools.mock_usage_api import MockUsageApi
    from shared.adapters.usage_api import UsageApiClient
    from shared.settings import Settings

    day = dt.date(2025, 3, 9)
    with MockUsageApi(40, start=day, end=day) as api:
        api.rate_limit_next(1, retry_after="0")
        api.fail_next(1, status=503, after=2)
        settings = Settings(USAGE_API_BASE_URL=api.base_url, USAGE_API_PAGE_SIZE=10, USAGE_API_RATE_LIMIT_RPS=1000)
        UsageApiClient(settings, sleep=lambda _s: None).fetch_day(day).close()
        statuses = [r.status for r in api.requests]
    metrics = {n: sum(v for _, v in points) for n, points in otel.metrics().items() if n.startswith("pipeline.api")}
    assert metrics["pipeline.api.requests"] == len(statuses)
    assert metrics["pipeline.api.rate_limited"] == statuses.count(429) == 1
    assert metrics["pipeline.api.retries"] == sum(s != 200 for s in statuses) == 2
    pages = [s for s in otel.spans() if s.name == "usage_api.page"]
    assert len(pages) == statuses.count(200) and sum(p.attributes["usage_api.attempts"] for p in pages) == len(statuses)


CONSOLE_SCRIPT = """
from shared import telemetry
from shared.logs import log_context
from shared.settings import Settings

assert telemetry.configure_telemetry(Settings(TELEMETRY_CONSOLE="true")) == "console"
with log_context(run_id="run-console-1", step="build"), telemetry.span("build_requested"):
    telemetry.BUILD_SUCCEEDED.add(1)
telemetry.flush()
"""


def test_the_console_switch_prints_spans_and_metrics_to_stderr(tmp_path: Path) -> None:
    script = tmp_path / "console.py"
    script.write_text(CONSOLE_SCRIPT)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("APPLICATIONINSIGHTS")}, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert '"name": "build_requested"' in done.stderr and '"run_id": "run-console-1"' in done.stderr
    assert '"name": "pipeline.build.succeeded"' in done.stderr
    assert done.stdout == ""
