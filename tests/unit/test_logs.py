"""Structured logs carry run_id/step/date and never secrets."""

from __future__ import annotations

import json
import logging

from shared.logs import ContextFilter, JsonFormatter, log_context, redact, register_secret


def _format(record_msg: str, *args: object) -> dict:
    record = logging.LogRecord("shared.test", logging.INFO, __file__, 1, record_msg, args, None)
    ContextFilter().filter(record)
    return json.loads(JsonFormatter().format(record))


def test_every_record_carries_the_context_set_at_the_entry_point() -> None:
    with log_context(run_id="r-1", step="build", date="2025-01-02"), log_context(step="quality"):
        line = _format("built %s rows", 5)
    assert line["msg"] == "built 5 rows"
    assert (line["run_id"], line["step"], line["date"]) == ("r-1", "quality", "2025-01-02")
    assert "run_id" not in _format("outside any context")


def test_connection_strings_and_tokens_are_redacted() -> None:
    text = (
        "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=c2VjcmV0;EndpointSuffix=x "
        "Authorization: Bearer abc.def"
    )
    out = redact(text)
    assert "c2VjcmV0" not in out and "abc.def" not in out
    assert "AccountName=a" in out


def test_registered_secret_values_are_redacted_anywhere() -> None:
    register_secret("pw-Th1s-is-secret")
    assert "pw-Th1s" not in _format("login failed for pw-Th1s-is-secret")["msg"]


def test_records_are_redacted_for_every_handler_not_only_ours() -> None:
    """The Functions host attaches its own handler; it must see masked text too."""
    import logging as std_logging

    from shared.logs import configure_logging

    register_secret("hunter2-very-secret")
    configure_logging("INFO")
    seen: list[str] = []

    class Collect(std_logging.Handler):
        def emit(self, record: std_logging.LogRecord) -> None:
            seen.append(record.getMessage())

    logger = std_logging.getLogger("shared.test.redaction")
    handler = Collect()
    logger.addHandler(handler)
    try:
        logger.warning("token was %s", "hunter2-very-secret")
    finally:
        logger.removeHandler(handler)
    assert seen == ["token was ***"]
