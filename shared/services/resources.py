"""What services take from the wiring: one small Protocol per resource.

Each service module composes the few it reads into its own Protocol (``class
FreshnessResources(HasSettings, HasWarehouse, HasAlerts, Protocol)``), so its signature says
exactly what it needs. ``shared.wiring.Resources`` satisfies every one structurally (services
never import the wiring: imports point one way); tests pass fakes with just those attributes.
The shape of Dagster resources: a service names the interface, the container supplies it.
Compose them in this module's order (settings, warehouse, alerts, blobs, ...), so that the
method resolution orders of composed Protocols agree when one combines another.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from shared.adapters.blob_store import BlobStore
    from shared.adapters.queue_store import BuildQueue, QueueStore
    from shared.adapters.table_state import StateTable
    from shared.adapters.usage_api import UsageApiClient
    from shared.adapters.warehouse.base import Warehouse
    from shared.services.alerts import AlertSink
    from shared.services.readiness import ReadinessGate
    from shared.settings import Settings


class HasSettings(Protocol):
    @property
    def settings(self) -> Settings: ...


class HasWarehouse(Protocol):
    @property
    def warehouse(self) -> Warehouse: ...


class HasAlerts(Protocol):
    @property
    def alerts(self) -> AlertSink: ...


class HasBlobs(Protocol):
    @property
    def blobs(self) -> BlobStore: ...


class HasStateTable(Protocol):
    @property
    def state_table(self) -> StateTable: ...


class HasReadiness(Protocol):
    @property
    def readiness(self) -> ReadinessGate: ...


class HasBuildQueue(Protocol):
    @property
    def build_queue(self) -> BuildQueue: ...


class HasUsageApi(Protocol):
    @property
    def usage_api(self) -> UsageApiClient: ...


class HasQueues(Protocol):
    def queue(self, name: str) -> QueueStore:
        """Raw access to one queue of the pipeline's storage account (the poison queues)."""
        ...


class StepResources(HasSettings, HasWarehouse, HasAlerts, Protocol):
    """What every pipeline step reads: its settings, the warehouse, the alert sink."""
