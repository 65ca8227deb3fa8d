"""Structured logging: every record carries run_id, step and date.

The context is set once at an entry point (a function invocation, a CLI command) with
``log_context(...)`` and read by a logging filter, so modules just use
``logging.getLogger(__name__)``.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import uuid
from collections.abc import Iterator
from typing import Any

from opentelemetry import trace

# An immutable default: context is only ever replaced (log_context sets a new dict), never mutated.
_EMPTY: dict[str, Any] = {}
_CONTEXT: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("pipeline_log_context", default=_EMPTY)

# Anything that looks like a credential is masked before a record is written. Settings also
# register their secret values here (see register_secret), which catches what no pattern can.
_SECRET_PATTERNS = [
    re.compile(r"(?i)(AccountKey|SharedAccessSignature|Password|PWD|sig|code|key|token)=([^;&\s]+)"),
    re.compile(r"(?i)(Bearer\s+)([A-Za-z0-9._~+/=-]+)"),
]
_SECRETS: set[str] = set()

# Context keys that become attributes of spans and of exported log records (Application Insights
# customDimensions), under these names; the same names in every table make KQL joins simple.
TELEMETRY_ATTRIBUTES = {
    "run_id": "run_id",
    "step": "step",
    "date": "activity_date",
    "pipeline": "pipeline",
    "function": "function",
    "blob_name": "blob_name",
    "invocation_id": "invocation_id",
}


def new_run_id() -> str:
    return uuid.uuid4().hex


def register_secret(value: str | None) -> None:
    """Remember a secret value so that redact() masks it wherever it appears."""
    if value and len(value) >= 4:
        _SECRETS.add(value)


def redact(text: str) -> str:
    # Longest first: a connection string is masked whole before the password inside it is,
    # so no fragment of it (server, user) survives next to a "***".
    for secret in sorted(_SECRETS, key=len, reverse=True):
        text = text.replace(secret, "***")
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: f"{m.group(1)}{'' if m.group(1).endswith(' ') else '='}***", text)
    return text


def current_context() -> dict[str, Any]:
    return dict(_CONTEXT.get())


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[dict[str, Any]]:
    """Add fields (run_id, step, date, ...) to every log record inside the block."""
    merged = {**_CONTEXT.get(), **{k: v for k, v in fields.items() if v is not None}}
    token = _CONTEXT.set(merged)
    if fields.get("run_id") is not None:
        # The invocation's span starts before its service names the run: when the run is first
        # named, the current span learns the context (run_id, step, date) too.
        span = trace.get_current_span()
        if span.is_recording() and "run_id" not in (getattr(span, "attributes", None) or {}):
            span.set_attributes(
                {TELEMETRY_ATTRIBUTES[k]: str(v) for k, v in merged.items() if k in TELEMETRY_ATTRIBUTES}
            )
    try:
        yield merged
    finally:
        _CONTEXT.reset(token)


class ContextFilter(logging.Filter):
    """Copies the current context onto the record so formatters can use it."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = _CONTEXT.get()
        record.ctx = ctx
        for key in ("run_id", "step", "date"):
            setattr(record, key, ctx.get(key, "-"))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: what log search in Application Insights or a terminal grep wants."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "msg": redact(record.getMessage()),
            **getattr(record, "ctx", {}),
        }
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            payload.update(extra)
        if record.exc_info:
            payload["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(payload, default=str)


_BASE_FACTORY = logging.getLogRecordFactory()


def _redacting_record_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    """Redact at record creation, so every handler — including the Functions host's own, which
    ships records to Application Insights — sees the masked text, not only our formatter."""
    record = _BASE_FACTORY(*args, **kwargs)
    # The context as flat attributes: what an OpenTelemetry log handler exports as dimensions.
    for key, value in _CONTEXT.get().items():
        name = TELEMETRY_ATTRIBUTES.get(key)
        if name is not None and name not in record.__dict__:
            record.__dict__[name] = str(value)
    if _SECRETS or record.args:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a malformed format string: leave it to the handler to report
            return record
        record.msg, record.args = redact(message), ()
    return record


def configure_logging(level: str = "INFO", json_lines: bool = True, stream: bool = True) -> None:
    """Install redaction, the context filter and the formatter on the root logger (idempotent).

    ``stream=False``: no stream handler of ours (in Azure, records leave through the
    OpenTelemetry handler; a second handler would ship every line twice).
    """
    logging.setLogRecordFactory(_redacting_record_factory)
    root = logging.getLogger()
    root.setLevel(level)
    if stream and not any(isinstance(f, ContextFilter) for h in root.handlers for f in h.filters):
        handler = logging.StreamHandler()
        handler.addFilter(ContextFilter())
        handler.setFormatter(
            JsonFormatter()
            if json_lines
            else logging.Formatter(
                "%(asctime)s %(levelname)s %(name)s [run=%(run_id)s step=%(step)s date=%(date)s] %(message)s"
            )
        )
        root.addHandler(handler)
    # The Azure SDK logs every HTTP request at INFO; keep it to warnings.
    logging.getLogger("azure").setLevel(logging.WARNING)
    # urllib3 logs request paths at DEBUG, and a webhook URL's path is its secret.
    logging.getLogger("urllib3").setLevel(logging.WARNING)
