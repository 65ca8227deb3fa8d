"""The pipeline end to end: function_app's own functions, driven by the local trigger runner,
against Azurite (tests/conftest.py), the mock usage API and an in-memory DuckDB warehouse.

Each pipeline loads a private copy of ``function_app.py`` (its own ``FunctionApp``: the library
lets an app list its functions only once per process) whose ``resources()`` returns a container
built for the test, so nothing is read from or written to the process environment.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib.util
import itertools
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from pipeline_tools.azurite import AzuriteProcess
from pipeline_tools.mock_usage_api import MockUsageApi
from pipeline_tools.runner import DrainResult, Invocation, Runner
from pipeline_tools.sample_data import CrmSample, CrmSnapshotFile
from shared.adapters.usage_api import UsageApiClient
from shared.adapters.warehouse.base import checked_table_name
from shared.host_config import queue_config
from shared.services.alerts import RecordingAlertSink
from shared.settings import Settings
from shared.wiring import Resources, connect_warehouse

FUNCTION_APP = Path(__file__).resolve().parents[2] / "function_app.py"
TIMER = "usage_timer"
# host.json's queue settings with failed messages visible again at once, so retries fit in a test.
HOST_CONFIG = dataclasses.replace(queue_config(), visibility_timeout=dt.timedelta(0))
# Columns that say when or by which run a row was written (they differ between equal builds),
# and provenance paths, which name each test's own containers.
VOLATILE_COLUMNS = frozenset({"run_id", "record_loaded_at", "ingested_at", "loaded_at", "load_id", "source_blob"})

_app_copies = itertools.count()


def private_function_app(resources: Resources) -> ModuleType:
    """A fresh import of function_app.py whose functions use ``resources``."""
    name = f"function_app_e2e_{next(_app_copies)}"
    spec = importlib.util.spec_from_file_location(name, FUNCTION_APP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.resources = lambda: resources  # what shared.wiring.resources() gives the host's worker
    return module


@dataclasses.dataclass
class Pipeline:
    settings: Settings
    resources: Resources
    runner: Runner
    api: MockUsageApi
    sample: CrmSample
    alerts: RecordingAlertSink

    # ---- driving, as Azure would -----------------------------------------------------------
    def upload_crm(self, files: Iterable[CrmSnapshotFile] | None = None) -> None:
        for file in self.sample.files() if files is None else files:
            self.resources.blobs.write(
                self.settings.crm_container, file.blob_name, file.content, content_type="text/csv"
            )

    def process(self, timeout_s: float = 120) -> DrainResult:
        """Let the runner deliver blobs and queue messages until nothing is left."""
        result = self.runner.drain(timeout_s=timeout_s)
        assert result.idle, f"work left after {timeout_s}s"
        return result

    def tick(self) -> list[Invocation]:
        """One usage timer tick (fired now), then everything it queued."""
        fired = self.runner.fire_timer(TIMER)
        self.process()
        return fired

    def run_everything(self) -> None:
        self.upload_crm()
        self.process()
        self.tick()

    # ---- reading the result ----------------------------------------------------------------
    @property
    def dates(self) -> list[dt.date]:
        return self.sample.dates()

    @property
    def good_dates(self) -> list[dt.date]:
        return [d for d in self.dates if d != self.sample.bad_date]

    def table(self, name: str) -> list[tuple[Any, ...]]:
        """A table's rows without the columns that name the run, in a stable order."""
        rows = self.resources.warehouse.run_sql(f"SELECT * FROM {checked_table_name(name)}")
        stable = [tuple(sorted((k, v) for k, v in row.items() if k not in VOLATILE_COLUMNS)) for row in rows]
        return sorted(stable, key=repr)

    def rows_per_date(self) -> dict[dt.date, int]:
        rows = self.resources.warehouse.run_sql(
            "SELECT activity_date, COUNT(*) AS row_count FROM analytics.company_daily_activity GROUP BY activity_date"
        )
        return {r["activity_date"]: int(r["row_count"]) for r in rows}

    def expected_rows(self, day: dt.date) -> int:
        """The spine: the CRM snapshot in force that day plus every company the API reports."""
        in_force = max(d for d in self.good_dates if d <= day)
        crm = set(self.sample.company_ids_on(in_force))
        api = {r["company_id"] for r in self.api.dataset.records(day)}
        return len(crm | api)

    def alert_titles(self) -> list[str]:
        return [a.title for a in self.alerts.alerts]


PipelineFactory = Callable[..., Pipeline]


@pytest.fixture
def make_pipeline(azurite: AzuriteProcess, make_storage_settings: Callable[..., Settings]) -> Iterator[PipelineFactory]:
    """``make_pipeline(companies=30, days=10, ...)``: a sample ending yesterday (UTC), as the timer
    pulls up to yesterday, with a look-back reaching its first day so one tick covers it."""
    apis: list[MockUsageApi] = []

    def make(
        companies: int = 30,
        days: int = 10,
        *,
        include_bad_file: bool = True,
        deliver_twice: bool = False,
        warehouse_wrapper: Callable[[Any], Any] | None = None,
        **settings_values: Any,
    ) -> Pipeline:
        end = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
        start = end - dt.timedelta(days=days - 1)
        sample = CrmSample(companies, start, end, include_bad_file=include_bad_file)
        api = MockUsageApi(companies, start=start, end=end).start()
        apis.append(api)
        settings = make_storage_settings(
            USAGE_API_BASE_URL=api.base_url,
            USAGE_LOOKBACK_DAYS=str(days - 1),
            USAGE_API_MAX_ATTEMPTS="2",
            **settings_values,
        )
        alerts = RecordingAlertSink()
        overrides: dict[str, Any] = {
            "alerts": alerts,
            "usage_api": UsageApiClient(settings, sleep=lambda _seconds: None),  # retries without waiting
        }
        warehouse = connect_warehouse(settings)
        warehouse.apply_schema()  # the deploy step: the app itself only checks the schema version
        if warehouse_wrapper is not None:
            warehouse = warehouse_wrapper(warehouse)
        resources = Resources(settings, **overrides, warehouse=warehouse)
        values = {
            "PIPELINE_STORAGE": azurite.connection_string,
            "AzureWebJobsStorage": azurite.connection_string,
            "CRM_CONTAINER": settings.crm_container,
            "BUILD_QUEUE": settings.build_queue,
            "USAGE_SCHEDULE": settings.usage_schedule,
            "AzureFunctionsWebHost__hostid": f"e2e-{settings.build_queue}",
        }
        runner = Runner.from_app(
            private_function_app(resources).app,
            values,
            environ={},
            host_config=HOST_CONFIG,
            deliver_twice=deliver_twice,
        )
        return Pipeline(settings, resources, runner, api, sample, alerts)

    yield make
    for api in apis:
        api.stop()
