"""OpenTelemetry for the pipeline: spans, metrics and log export, configured once per process.

``configure_telemetry(settings)`` picks one of three modes:

* ``azure_monitor`` — APPLICATIONINSIGHTS_CONNECTION_STRING is set: the Azure Monitor distro
  (``azure-monitor-opentelemetry``) installs the tracer, meter and logger providers; log records
  reach Application Insights through its handler on the root logger (the caller then installs
  no JSON stream handler of its own);
* ``console`` — TELEMETRY_CONSOLE without a connection string: spans and metrics are printed to
  stderr by the SDK's console exporters, for looking at locally;
* ``off`` — otherwise nothing is installed, and every span and instrument below is the API's no-op.

Spans and instruments are defined here once (the metric names are an interface: the Azure
Monitor alert rules in ``infra/`` query them in ``customMetrics``), so services and adapters
only say ``with telemetry.span(...)`` or ``telemetry.CRM_ROWS_STAGED.add(n)``.

No secret reaches a span or an exported log record: every span gets the log context's
attributes and has its string attributes and name redacted when it starts (the requests
instrumentation puts the full URL there), exported log records are redacted again (the
handler adds exception text and stack traces of its own), and the webhook post is made with
HTTP instrumentation suppressed (its URL is the secret) inside a span of ours that names no URL.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import sys
import threading
import traceback
from collections.abc import Iterator, Mapping
from typing import Any, Literal

from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.sdk._logs import LogRecordProcessor
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from shared.logs import TELEMETRY_ATTRIBUTES, current_context, redact
from shared.settings import Settings

log = logging.getLogger(__name__)

Mode = Literal["azure_monitor", "console", "off"]

_SCOPE = "company_activity_pipeline"
tracer = trace.get_tracer(_SCOPE)
meter = metrics.get_meter(_SCOPE)

# ---- metrics (names and units are agreed with the alert rules; see README "Telemetry") -------
CRM_ROWS_STAGED = meter.create_counter("pipeline.crm.rows_staged", unit="{row}", description="CRM rows staged")
CRM_ROWS_REJECTED = meter.create_counter(
    "pipeline.crm.rows_rejected", unit="{row}", description="CRM rows rejected (quarantined)"
)
USAGE_ROWS_STAGED = meter.create_counter(
    "pipeline.usage.rows_staged", unit="{row}", description="Usage rows staged into stg.product_usage"
)
USAGE_ROWS_REJECTED = meter.create_counter(
    "pipeline.usage.rows_rejected", unit="{record}", description="Usage API records rejected by validation"
)
API_REQUESTS = meter.create_counter("pipeline.api.requests", unit="{request}", description="Usage API HTTP requests")
API_RETRIES = meter.create_counter("pipeline.api.retries", unit="{retry}", description="Usage API requests retried")
API_RATE_LIMITED = meter.create_counter(
    "pipeline.api.rate_limited", unit="{response}", description="Usage API answers HTTP 429"
)
BUILD_ROWS_WRITTEN = meter.create_counter(
    "pipeline.build.rows_written", unit="{row}", description="Analytics rows of the rebuilt dates"
)
BUILD_DURATION = meter.create_histogram("pipeline.build.duration", unit="s", description="Duration of one build")
BUILD_SUCCEEDED = meter.create_counter(
    "pipeline.build.succeeded", unit="{build}", description="Builds that committed (skipped builds not counted)"
)
CHECKS_FAILED = meter.create_counter(
    "pipeline.checks.failed", unit="{check}", description="Data-quality check results with status fail"
)
FRESHNESS_LAG = meter.create_gauge(
    "pipeline.input.freshness_lag",
    unit="h",
    description="Hours since the day after an input's newest arrival ended (0: up to date); attribute input",
)
POISON_MESSAGES = meter.create_counter(
    "pipeline.poison.messages", unit="{message}", description="Messages moved to a poison queue; attribute queue"
)

_LOCK = threading.Lock()
_MODE: Mode | None = None
_PROPAGATOR = TraceContextTextMapPropagator()
# The distro's own HTTP instrumentations would record every URL (the webhook's is a secret) and
# the Azure SDK's adds its URL attributes after a span starts, out of our redaction's reach; the
# requests instrumentation is installed by us instead (instrument_requests).
_DISTRO_INSTRUMENTATIONS_OFF = ("azure_sdk", "requests", "urllib", "urllib3", "httpx", "httpx2")


# ---- configuration ------------------------------------------------------------------------------
def configure_telemetry(settings: Settings, **distro_options: Any) -> Mode:
    """Install OpenTelemetry for this process as the settings say; only the first call acts.

    ``distro_options`` go to ``configure_azure_monitor`` (tests use ``disable_offline_storage``).
    """
    global _MODE
    with _LOCK:
        if _MODE is not None:
            return _MODE
        if settings.applicationinsights_connection_string is not None:
            _configure_azure_monitor(settings, distro_options)
            _MODE = "azure_monitor"
        elif settings.telemetry_console:
            _configure_console(settings)
            _MODE = "console"
        else:
            _MODE = "off"
        if _MODE != "off":
            instrument_requests()
            log.info("telemetry: %s (sampling ratio %g)", _MODE, settings.telemetry_sampling_ratio)
        return _MODE


def _configure_azure_monitor(settings: Settings, options: dict[str, Any]) -> None:
    from azure.monitor.opentelemetry import configure_azure_monitor

    secret = settings.applicationinsights_connection_string
    assert secret is not None
    credential = entra_credential(settings.applicationinsights_authentication_string)
    if credential is not None:
        options = {"credential": credential, **options}
    configure_azure_monitor(
        connection_string=secret.get_secret_value(),
        # A fixed share instead of the distro's default limit of 5 traces/s, which drops most spans
        # of a build or a backfill.
        sampling_ratio=settings.telemetry_sampling_ratio,
        logger_name="",  # the root logger: every module's records, each once
        instrumentation_options={name: {"enabled": False} for name in _DISTRO_INSTRUMENTATIONS_OFF},
        span_processors=[PipelineSpanProcessor()],
        log_record_processors=[RedactingLogRecordProcessor()],
        enable_live_metrics=False,
        **options,
    )


def entra_credential(authentication_string: str) -> Any | None:
    """APPLICATIONINSIGHTS_AUTHENTICATION_STRING as the Functions host reads it: ``Authorization=AAD``
    means send with the managed identity (``ClientId=`` picks a user-assigned one); else None."""
    parts = dict(part.strip().split("=", 1) for part in authentication_string.split(";") if "=" in part)
    if parts.get("Authorization", "").upper() != "AAD":
        return None
    from azure.identity import ManagedIdentityCredential

    client_id = parts.get("ClientId")
    return ManagedIdentityCredential(client_id=client_id) if client_id else ManagedIdentityCredential()


def _configure_console(settings: Settings) -> None:
    from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

    install_providers(
        SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stderr)),
        PeriodicExportingMetricReader(ConsoleMetricExporter(out=sys.stderr), export_interval_millis=10_000),
        sampling_ratio=settings.telemetry_sampling_ratio,
    )


def install_providers(
    span_processor: SpanProcessor,
    metric_reader: Any,
    *,
    log_processor: Any = None,
    sampling_ratio: float = 1.0,
) -> None:
    """Global SDK providers with the pipeline's processors in front of the given exporters.

    Used by the console mode and by tests (in-memory exporters). ``log_processor``: also export
    log records (through a handler on the root logger), as the distro does in Azure.
    """
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    tracer_provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(sampling_ratio)))
    tracer_provider.add_span_processor(PipelineSpanProcessor())
    tracer_provider.add_span_processor(span_processor)
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[metric_reader]))
    if log_processor is not None:
        from opentelemetry._logs import set_logger_provider
        from opentelemetry.instrumentation.logging.handler import LoggingHandler
        from opentelemetry.sdk._logs import LoggerProvider

        logger_provider = LoggerProvider()
        logger_provider.add_log_record_processor(RedactingLogRecordProcessor())
        logger_provider.add_log_record_processor(log_processor)
        set_logger_provider(logger_provider)
        logging.getLogger().addHandler(LoggingHandler(logger_provider=logger_provider))


def instrument_requests() -> None:
    """A client span per HTTP request made with ``requests`` (each usage API page and retry)."""
    from opentelemetry.instrumentation.requests import RequestsInstrumentor

    instrumentor = RequestsInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument()


# ---- spans ---------------------------------------------------------------------------------------
@contextlib.contextmanager
def span(name: str, kind: SpanKind = SpanKind.INTERNAL, attributes: Mapping[str, Any] | None = None) -> Iterator[Span]:
    """A child span of the current one; an exception is recorded on it (redacted) and re-raised.

    Attributes come as a mapping because OpenTelemetry's names are dotted (``db.rows``)."""
    with tracer.start_as_current_span(
        name, kind=kind, attributes=_attributes(attributes or {}), record_exception=False, set_status_on_exception=False
    ) as current:
        try:
            yield current
        except BaseException as exc:
            record_error(current, exc)
            raise


def record_error(span: Span, exc: BaseException) -> None:
    """The exception on the span, its message and stack trace redacted (the SDK's own recording
    would copy str(exc), which may quote a URL or a connection string)."""
    message = redact(str(exc))[:1000]
    span.record_exception(
        exc,
        attributes={
            "exception.message": message,
            "exception.stacktrace": redact("".join(traceback.format_exception(exc))),
        },
    )
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {message}"[:300]))


@contextlib.contextmanager
def untraced_http() -> Iterator[None]:
    """Requests made inside are not traced by the HTTP instrumentation (a URL that is a secret)."""
    from opentelemetry.instrumentation.utils import suppress_http_instrumentation

    with suppress_http_instrumentation():
        yield


def current_traceparent() -> str | None:
    """The W3C traceparent of the current span, to carry in a message; None when not tracing."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent")


def link_to(traceparent: str | None) -> bool:
    """Link the current span to the span a message was sent from (its W3C traceparent)."""
    if not traceparent:
        return False
    context = trace.get_current_span(_PROPAGATOR.extract({"traceparent": traceparent})).get_span_context()
    current = trace.get_current_span()
    if not context.is_valid or not current.is_recording():
        return False
    current.add_link(context, {"pipeline.link": "queued_by"})
    return True


def set_attributes(**attributes: Any) -> None:
    """Add attributes to the current span (e.g. what an invocation turned out to be about)."""
    current = trace.get_current_span()
    if current.is_recording():
        current.set_attributes(_attributes(attributes))


class PipelineSpanProcessor(SpanProcessor):
    """At span start: the log context (run_id, step, activity_date, ...) becomes attributes the
    span does not already have, and every string attribute and the name are redacted."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        present = dict(getattr(span, "attributes", None) or {})
        context = _attributes(context_attributes(current_context()))
        span.set_attributes({k: v for k, v in context.items() if k not in present})
        for key, value in present.items():
            if isinstance(value, str) and redact(value) != value:
                span.set_attribute(key, redact(value))
        name = getattr(span, "name", "")
        if name and redact(name) != name:
            span.update_name(redact(name))

    def on_end(self, span: ReadableSpan) -> None:
        return None


class RedactingLogRecordProcessor(LogRecordProcessor):
    """Runs before the exporting processor: the body and string attributes redacted, nested
    values flattened or dropped (an exported record carries the exception text and stack trace
    the logging handler adds, which our record factory never saw)."""

    def on_emit(self, log_data: Any) -> None:
        record = log_data.log_record
        if isinstance(record.body, str):
            record.body = redact(record.body)
        attributes = dict(record.attributes or {})
        fields = attributes.pop("fields", None)
        attributes.pop("ctx", None)
        if isinstance(fields, Mapping):
            attributes.update({str(k): v for k, v in fields.items() if k not in attributes})
        record.attributes = {k: _safe_value(v) for k, v in attributes.items() if _safe_value(v) is not None}

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def context_attributes(context: Mapping[str, Any]) -> dict[str, Any]:
    """The log context under the attribute names of spans and exported logs."""
    return {TELEMETRY_ATTRIBUTES[k]: v for k, v in context.items() if k in TELEMETRY_ATTRIBUTES and v is not None}


def _attributes(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in ((k, _safe_value(v)) for k, v in values.items()) if v is not None}


def _safe_value(value: Any) -> Any:
    """An attribute value OpenTelemetry accepts, redacted; None drops it."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return [redact(v) for v in value]
    return None


def flush(timeout_millis: int = 10_000) -> None:
    """Push buffered telemetry out (the end of a short-lived process or a test)."""
    for provider in (trace.get_tracer_provider(), metrics.get_meter_provider()):
        force = getattr(provider, "force_flush", None)
        if force is not None:
            force(timeout_millis)
    from opentelemetry._logs import get_logger_provider

    force = getattr(get_logger_provider(), "force_flush", None)
    if force is not None:
        force(timeout_millis)
