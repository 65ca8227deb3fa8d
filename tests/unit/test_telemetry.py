"""shared/telemetry.py parts: trace context in build messages, off by default."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import pytest

from shared import telemetry
from shared.errors import MalformedMessage
from shared.rules.build_plan import parse_build_request
from shared.settings import Settings

if TYPE_CHECKING:
    from tests.conftest import OtelCapture

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_a_build_message_may_carry_a_traceparent_and_older_ones_without_still_parse() -> None:
    new = parse_build_request({"dates": ["2025-03-09"], "traceparent": TRACEPARENT})
    old = parse_build_request({"dates": ["2025-03-09"], "reason": "both inputs present"})
    assert new.traceparent == TRACEPARENT and new.dates == (dt.date(2025, 3, 9),)
    assert old.traceparent is None and old.dates == new.dates


def test_a_traceparent_that_is_not_a_string_is_a_malformed_message() -> None:
    with pytest.raises(MalformedMessage, match="traceparent"):
        parse_build_request({"dates": ["2025-03-09"], "traceparent": {"x": 1}})


def test_the_traceparent_sent_is_the_one_a_build_links_to(otel: OtelCapture) -> None:
    with telemetry.span("usage_timer"):
        sent = telemetry.current_traceparent()
    assert sent is not None
    with telemetry.span("build_requested"):
        assert telemetry.link_to(sent)
        assert not telemetry.link_to("not-a-traceparent") and not telemetry.link_to(None)
    queuer, build = otel.spans()
    [link] = build.links
    assert link.context.trace_id == queuer.context.trace_id and link.context.span_id == queuer.context.span_id


def test_without_a_connection_string_or_the_console_switch_telemetry_is_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(telemetry, "_MODE", None)
    assert telemetry.configure_telemetry(Settings()) == "off"
    assert telemetry.configure_telemetry(Settings(TELEMETRY_CONSOLE=True)) == "off", "configured once per process"
    assert telemetry.current_traceparent() is None  # no span, nothing to carry


def test_the_connection_string_is_a_secret_of_the_settings() -> None:
    from shared.logs import redact

    conn = "InstrumentationKey=11111111-2222-3333-4444-555555555555;IngestionEndpoint=https://x.example/"
    Settings(APPLICATIONINSIGHTS_CONNECTION_STRING=conn)
    assert conn not in redact(f"using {conn}")
