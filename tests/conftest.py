"""Fixtures shared by the whole suite: a private Azurite and per-test storage names.

- ``azurite``: one Azurite per test session, i.e. one per pytest-xdist worker (each worker is its
  own session), on free loopback ports, in memory, stopped by PID at the end.
- ``storage_settings``: ``Settings`` pointing at that Azurite, with containers, queue and table
  names unique to the test (and already created), so tests never see each other's data.
- ``make_storage_settings(**values)``: the same, with extra settings.
- ``make_resources(settings, **overrides)``: a ``Resources`` with the real storage adapters, an
  in-memory DuckDB warehouse and a ``RecordingAlertSink`` unless overridden.

Tests that use ``azurite`` are marked ``integration`` automatically (and should say so too).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pipeline_tools.azurite import AzuriteProcess, provision
from shared.adapters.warehouse.duckdb_engine import DuckDBWarehouse
from shared.settings import Settings
from shared.wiring import Resources, connect_warehouse

StorageSettingsFactory = Callable[..., Settings]
ResourcesFactory = Callable[..., Resources]


@pytest.fixture
def warehouse() -> Iterator[DuckDBWarehouse]:
    """A fresh in-memory DuckDB warehouse with the whole schema applied."""
    engine = DuckDBWarehouse(":memory:")
    engine.apply_schema()
    yield engine
    engine.close()


@pytest.fixture
def wh(warehouse: DuckDBWarehouse) -> DuckDBWarehouse:
    """Short alias of ``warehouse`` for SQL-heavy tests."""
    return warehouse


@pytest.fixture(scope="session")
def azurite() -> Iterator[AzuriteProcess]:
    with AzuriteProcess.start() as process:
        yield process


def unique_storage_names() -> dict[str, str]:
    """Names valid for every service and unique per call.

    Containers and queues: 3-63 chars of lowercase letters, digits and hyphens. Tables: 3-63
    alphanumerics starting with a letter. The build queue leaves room for its "-poison" twin.
    """
    suffix = uuid.uuid4().hex[:16]
    return {
        "CRM_CONTAINER": f"crm-{suffix}",
        "QUARANTINE_CONTAINER": f"quarantine-{suffix}",
        "RAW_CONTAINER": f"raw-{suffix}",
        "BUILD_QUEUE": f"build-{suffix}",
        "STATE_TABLE": f"state{suffix}",
    }


@pytest.fixture
def make_storage_settings(azurite: AzuriteProcess) -> Iterator[StorageSettingsFactory]:
    created: list[Settings] = []

    def make(**values: Any) -> Settings:
        settings = Settings.from_values(
            {
                "PIPELINE_STORAGE": azurite.connection_string,
                "DUCKDB_PATH": ":memory:",
                **unique_storage_names(),
                **values,
            }
        )
        provision(settings)
        created.append(settings)
        return settings

    yield make
    for settings in created:
        _drop_storage(settings)


@pytest.fixture
def storage_settings(make_storage_settings: StorageSettingsFactory) -> Settings:
    return make_storage_settings()


@pytest.fixture
def make_resources() -> ResourcesFactory:
    def make(settings: Settings, **overrides: Any) -> Resources:
        from shared.services.alerts import RecordingAlertSink

        overrides.setdefault("alerts", RecordingAlertSink())
        if "warehouse" not in overrides:
            overrides["warehouse"] = migrated_warehouse(settings)
        return Resources(settings, **overrides)

    return make


def migrated_warehouse(settings: Settings) -> Any:
    """The settings' warehouse with every migration applied, as the deploy step leaves it: the
    app itself (Resources.warehouse) only checks the schema version."""
    engine = connect_warehouse(settings)
    engine.apply_schema()
    return engine


def _drop_storage(settings: Settings) -> None:
    """Free Azurite's memory after a test (best effort: the process is private and in-memory)."""
    from azure.data.tables import TableServiceClient
    from azure.storage.blob import BlobServiceClient
    from azure.storage.queue import QueueServiceClient

    conn = settings.storage_connection_string()
    assert conn is not None
    with contextlib.suppress(Exception):
        blobs = BlobServiceClient.from_connection_string(conn)
        for container in (settings.crm_container, settings.quarantine_container, settings.raw_container):
            with contextlib.suppress(Exception):
                blobs.delete_container(container)
        queues = QueueServiceClient.from_connection_string(conn)
        for queue in (settings.build_queue, f"{settings.build_queue}-poison"):
            with contextlib.suppress(Exception):
                queues.delete_queue(queue)
        TableServiceClient.from_connection_string(conn).delete_table(settings.state_table)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Whatever needs Azurite is an integration test, so `-m "not integration"` skips it."""
    for item in items:
        if "azurite" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)


# ---- OpenTelemetry capture (tests of shared/telemetry.py) ----------------------------------------
class OtelCapture:
    """In-memory exporters behind the pipeline's real span and log processors.

    OpenTelemetry's global providers can be set once per process, so they are installed on first
    use and stay; the exporters only keep what arrives while a test holds the ``otel`` fixture.
    """

    def __init__(self) -> None:
        from opentelemetry.sdk._logs import LogRecordProcessor
        from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
        from opentelemetry.sdk.metrics import Counter, Histogram, UpDownCounter
        from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
        from opentelemetry.sdk.trace import SpanProcessor
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        from shared import telemetry

        self.active = False
        self.span_exporter = InMemorySpanExporter()
        self.log_exporter = InMemoryLogRecordExporter()
        delta = AggregationTemporality.DELTA
        self.metric_reader = InMemoryMetricReader(
            preferred_temporality={Counter: delta, Histogram: delta, UpDownCounter: delta}
        )
        spans, logs = SimpleSpanProcessor(self.span_exporter), SimpleLogRecordProcessor(self.log_exporter)
        capture = self

        class SpansWhileActive(SpanProcessor):
            def on_end(self, span: Any) -> None:
                if capture.active:
                    spans.on_end(span)

        class LogsWhileActive(LogRecordProcessor):
            def on_emit(self, log_data: Any) -> None:
                if capture.active:
                    logs.on_emit(log_data)

            def shutdown(self) -> None:
                return None

            def force_flush(self, timeout_millis: int = 30_000) -> bool:
                return True

        telemetry.install_providers(SpansWhileActive(), self.metric_reader, log_processor=LogsWhileActive())
        telemetry.instrument_requests()  # as configure_telemetry does

    def start(self) -> None:
        self.span_exporter.clear()
        self.log_exporter.clear()
        self.metric_reader.get_metrics_data()  # deltas start from here
        self.active = True

    def spans(self) -> list[Any]:
        return list(self.span_exporter.get_finished_spans())

    def logs(self) -> list[Any]:
        return [data.log_record for data in self.log_exporter.get_finished_logs()]

    def metrics(self) -> dict[str, list[tuple[dict[str, Any], Any]]]:
        """Metric name -> [(attributes, value)]: a sum, a histogram's (count, sum), a gauge's value."""
        found: dict[str, list[tuple[dict[str, Any], Any]]] = {}
        data = self.metric_reader.get_metrics_data()
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        value = (point.count, point.sum) if hasattr(point, "bucket_counts") else point.value
                        found.setdefault(metric.name, []).append((dict(point.attributes or {}), value))
        return found


_OTEL: list[OtelCapture] = []


@pytest.fixture
def otel() -> Iterator[OtelCapture]:
    """Spans, log records and metrics the code under test emits through shared/telemetry.py."""
    import logging

    from shared.logs import configure_logging

    if not _OTEL:
        _OTEL.append(OtelCapture())
    capture = _OTEL[0]
    root = logging.getLogger()
    level = root.level
    configure_logging("INFO", stream=False)  # the record factory that puts the context on records
    capture.start()
    try:
        yield capture
    finally:
        capture.active = False
        root.setLevel(level)
