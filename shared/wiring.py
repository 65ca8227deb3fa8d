"""Builds the resources services take (clients, engines, the readiness gate, the alert sink)
from Settings: lazily, once per process.

Only this module and ``pipeline_tools`` construct adapters; services receive them. The
Functions worker imports ``function_app`` once per process and reuses this container across
invocations (the "manage connections" guidance: one client per process, not per call).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import logging
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from opentelemetry.trace import SpanKind

from shared import telemetry
from shared.clock import utc_now
from shared.logs import configure_logging, log_context
from shared.settings import Settings, WarehouseEngine

if TYPE_CHECKING:
    from shared.adapters.blob_store import BlobStore
    from shared.adapters.queue_store import BuildQueue, QueueStore
    from shared.adapters.table_state import StateTable
    from shared.adapters.usage_api import UsageApiClient
    from shared.adapters.warehouse.base import Warehouse
    from shared.services.alerts import AlertSink
    from shared.services.builder import BuildOutcome
    from shared.services.crm_staging import StagingResult
    from shared.services.readiness import ReadinessGate
    from shared.services.usage_ingest import TickResult


class Resources:
    """The process-wide set of adapters and the three entry points the bindings call.

    It satisfies every service's Protocol (``shared.services.resources``) structurally."""

    def __init__(self, settings: Settings, **overrides: Any) -> None:
        self.settings = settings
        # Tests and tools may inject any adapter by name (warehouse=..., alerts=..., ...).
        self._overrides = overrides
        # Re-entrant: building one adapter may need another (readiness -> state_table, build_queue).
        self._lock = threading.RLock()

    def _get(self, name: str, build: Any) -> Any:
        if name in self._overrides:
            return self._overrides[name]
        with self._lock:
            if name not in self._overrides:
                self._overrides[name] = build()
        return self._overrides[name]

    # ---- adapters --------------------------------------------------------------------------
    @property
    def warehouse(self) -> Warehouse:
        return self._get("warehouse", self._build_warehouse)

    def _build_warehouse(self) -> Warehouse:
        # Migrations are a deploy step (`schema apply`, the azd post-provision hook): at runtime
        # the app only checks the version, so its identity needs no DDL rights.
        engine = connect_warehouse(self.settings)
        try:
            engine.require_current_schema()
        except BaseException:
            engine.close()
            raise
        self._recover_after_start(engine)
        return engine

    def _recover_after_start(self, engine: Warehouse) -> None:
        """A process that starts cleans up after one that was killed (abandoned runs, landing
        debris); never fatal: the timer's sweep does the same."""
        from shared.logs import new_run_id
        from shared.services.run_history import recover_abandoned_runs

        try:
            recover_abandoned_runs(
                engine,
                self.alerts,
                pipeline=self.settings.pipeline_name,
                lease=dt.timedelta(minutes=self.settings.run_lease_minutes),
                now=utc_now(),
                run_id=new_run_id(),
            )
        except Exception as exc:
            logging.getLogger(__name__).warning("recovery at start-up failed (%s)", type(exc).__name__)

    @property
    def blobs(self) -> BlobStore:
        from shared.adapters.blob_store import BlobStore

        return self._get("blobs", lambda: self._provisioned(BlobStore.from_settings))

    @property
    def build_queue(self) -> BuildQueue:
        from shared.adapters.queue_store import BuildQueue

        return self._get("build_queue", lambda: self._provisioned(BuildQueue.from_settings))

    @property
    def state_table(self) -> StateTable:
        from shared.adapters.table_state import StateTable

        return self._get("state_table", lambda: self._provisioned(StateTable.from_settings))

    def queue(self, name: str) -> QueueStore:
        """Raw access to one queue of the pipeline's account (the poison queues)."""
        from shared.adapters.queue_store import QueueStore

        return self._get(f"queue:{name}", lambda: self._provisioned(lambda s: QueueStore.from_settings(s, name)))

    def _provisioned(self, build: Any) -> Any:
        """Build a storage adapter, creating the pipeline's containers, queues and table first,
        once per process: a fresh account (or one an operator's CLI reaches first) just works."""
        if "_storage_provisioned" not in self._overrides:
            provision_storage(self.settings)
            self._overrides["_storage_provisioned"] = True
        return build(self.settings)

    @property
    def usage_api(self) -> UsageApiClient:
        """One HTTP session and rate limiter per process; each run takes ``.for_run()``."""
        from shared.adapters.usage_api import UsageApiClient

        return self._get("usage_api", lambda: UsageApiClient.from_settings(self.settings))

    @property
    def readiness(self) -> ReadinessGate:
        from shared.services.readiness import ReadinessGate

        return self._get(
            "readiness", lambda: ReadinessGate(self.state_table, self.build_queue, self.settings.crm_grace_hours)
        )

    @property
    def alerts(self) -> AlertSink:
        def build() -> AlertSink:
            from shared.services.alert_deliveries import RecordedAlertSink
            from shared.services.alerts import LogAlertSink

            inner: AlertSink
            if self.settings.alert_webhook_url is None:
                inner = LogAlertSink()
            else:
                from shared.adapters.webhook import WebhookAlertSink

                # De-duplication claims live in the state table (lazily: alerts must work even
                # when storage is the thing that is down; the sink then falls back to memory).
                inner = WebhookAlertSink.from_settings(self.settings, state_table=lambda: self.state_table)
            # Each delivery is recorded in ops.alert_deliveries, after sending (lazily too).
            return RecordedAlertSink(inner, lambda: self.warehouse)

        return self._get("alerts", build)

    # ---- entry points (one per binding; each invocation is one trace) ----------------------
    def stage_crm_blob(self, blob_name: str) -> StagingResult:
        from shared.services import crm_staging

        with self._invocation("crm_snapshot_arrived", blob_name=blob_name):
            return crm_staging.stage_crm_blob(blob_name, self)

    def run_timer_tick(self, now: dt.datetime, past_due: bool = False) -> TickResult:
        """The usage timer: the usage tick, then input freshness (also when the tick failed:
        a failing pull is when a missing input matters most)."""
        from shared.services import freshness

        with self._invocation("usage_timer"):
            tick = None
            try:
                tick = self.run_usage_tick(now, past_due)
                return tick
            finally:  # one run id for the invocation's steps (a new one if the tick failed early)
                freshness.evaluate_on_schedule(self, now, run_id=tick.run_id if tick is not None else None)

    def run_usage_tick(self, now: dt.datetime, past_due: bool = False) -> TickResult:
        from shared.services import usage_ingest

        return usage_ingest.run_usage_tick(now, past_due, self)

    def handle_build_message(
        self, body: bytes, dequeue_count: int = 1, message_id: str | None = None
    ) -> BuildOutcome | None:
        from shared.services import builder

        with self._invocation("build_requested"):
            return builder.handle_build_message(body, dequeue_count, self, message_id=message_id)

    @contextlib.contextmanager
    def _invocation(self, function: str, **attributes: Any) -> Iterator[None]:
        """One span per function invocation, with the context every child span and log record
        inherits (the service adds run_id, step and date)."""
        with (
            log_context(pipeline=self.settings.pipeline_name, function=function, **attributes),
            telemetry.span(function, kind=SpanKind.SERVER),
        ):
            yield


def connect_warehouse(settings: Settings) -> Warehouse:
    """The configured engine, connected, its schema neither applied nor checked: the deploy step
    (`schema apply`) applies migrations here; Resources.warehouse checks they are all applied."""
    if settings.warehouse_engine == WarehouseEngine.AZURE_SQL:
        from shared.adapters.warehouse.azure_sql import AzureSqlWarehouse

        return AzureSqlWarehouse.from_settings(settings)
    from shared.adapters.warehouse.duckdb_engine import DuckDBWarehouse

    return DuckDBWarehouse(settings.duckdb_path, memory_limit=settings.duckdb_memory_limit)


def provision_storage(settings: Settings) -> None:
    """Create the containers, queues (with the build queue's poison queue) and table the pipeline
    uses. Idempotent; in Azure they may also come from infrastructure code."""
    from shared.adapters.blob_store import BlobStore
    from shared.adapters.queue_store import QueueStore
    from shared.adapters.table_state import StateTable

    blobs = BlobStore.from_settings(settings)
    for container in (settings.crm_container, settings.quarantine_container, settings.raw_container):
        blobs.ensure_container(container)
    queue = QueueStore.from_settings(settings)
    queue.ensure_exists()
    # Created up front so operators (and tests) can look into it before a message ever fails.
    queue.named(f"{queue.name}-poison").ensure_exists()
    StateTable.from_settings(settings).ensure_exists()


@functools.lru_cache(maxsize=1)
def resources() -> Resources:
    """The container the Functions host uses, from app settings (environment variables)."""
    settings = Settings.from_environment()
    mode = telemetry.configure_telemetry(settings)
    # In Azure the distro's handler ships every record; our JSON lines are for local runs only.
    configure_logging(settings.log_level, stream=mode != "azure_monitor")
    return Resources(settings)
