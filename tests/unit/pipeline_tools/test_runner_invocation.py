"""Queue message encoding per host.json, and how one invocation is called and logged."""

from __future__ import annotations

import base64
import logging

import pytest

from pipeline_tools.runner import (
    QueueTrigger,
    RegisteredFunction,
    UndecodableMessage,
    decode_message,
    encode_message,
    invoke,
)


def test_base64_messages_are_decoded_to_the_original_bytes() -> None:
    body = b'{"dates": ["2025-01-01"]}'
    assert decode_message(base64.b64encode(body).decode(), "base64") == body


def test_plain_messages_are_passed_through_when_encoding_is_none() -> None:
    assert decode_message('{"a": 1}', "none") == b'{"a": 1}'


def test_text_that_is_not_base64_is_undecodable_under_base64_encoding() -> None:
    with pytest.raises(UndecodableMessage):
        decode_message('{"a": 1}', "base64")


@pytest.mark.parametrize("encoding", ["base64", "none"])
def test_encode_then_decode_round_trips(encoding: str) -> None:
    body = '{"date": "2025-01-01", "name": "Müller"}'.encode()
    assert decode_message(encode_message(body, encoding), encoding) == body


def _function(body) -> RegisteredFunction:  # type: ignore[no-untyped-def]
    return RegisteredFunction("fn", "msg", QueueTrigger("q", "S"), body)


def test_the_argument_is_passed_under_the_binding_name() -> None:
    seen = []
    result = invoke(_function(lambda msg: seen.append(msg)), "payload", {"queue": "q"}, "test")
    assert seen == ["payload"]
    assert result.succeeded and result.outcome == "succeeded" and result.error is None


def test_a_raising_function_is_a_failed_invocation_not_a_crash() -> None:
    def boom(msg: object) -> None:
        raise ValueError("bad input")

    result = invoke(_function(boom), "payload", {"queue": "q"}, "test")
    assert not result.succeeded
    assert isinstance(result.error, ValueError)


def test_each_invocation_logs_function_trigger_outcome_and_duration(caplog: pytest.LogCaptureFixture) -> None:
    def boom(msg: object) -> None:
        raise ValueError("bad input")

    with caplog.at_level(logging.INFO, logger="pipeline_tools.runner"):
        invoke(_function(lambda msg: None), "payload", {"queue": "q", "message_id": "m1"}, "test")
        invoke(_function(boom), "payload", {"queue": "q", "message_id": "m2"}, "test")

    finished = [r for r in caplog.records if r.getMessage().startswith("Executed")]
    assert [r.fields["outcome"] for r in finished] == ["succeeded", "failed"]  # type: ignore[attr-defined]
    assert finished[0].fields["trigger"] == {"queue": "q", "message_id": "m1"}  # type: ignore[attr-defined]
    assert all(isinstance(r.fields["duration_ms"], int) for r in finished)  # type: ignore[attr-defined]
    assert finished[1].fields["error_type"] == "ValueError"  # type: ignore[attr-defined]
    assert "'Functions.fn'" in finished[1].getMessage()
