"""The timer's recovery sweep on Azurite + DuckDB, case by case: which CRM blobs it stages
(versions no run finished, once their trigger had its chance) and which it leaves alone (already
processed, processed before ops.crm_blob_versions existed, or overtaken by a later file)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest

from shared.adapters.warehouse.duckdb_engine import DuckDBWarehouse
from shared.services import poison
from shared.settings import Settings
from shared.wiring import Resources

pytestmark = pytest.mark.integration

HEADER = "company_id,name,country,industry_tag,last_contact_at\n"


@pytest.fixture
def resources(
    storage_settings: Settings, make_resources: Callable[..., Resources], warehouse: DuckDBWarehouse
) -> Resources:
    return make_resources(storage_settings, warehouse=warehouse)


def upload(resources: Resources, name: str, company: str) -> None:
    resources.blobs.write(resources.settings.crm_container, name, f"{HEADER}{company},Name,DE,x,\n".encode())


def staging_runs(warehouse: DuckDBWarehouse) -> int:
    return warehouse.run_sql("SELECT COUNT(*) AS n FROM ops.pipeline_runs WHERE step = 'crm_staging'")[0]["n"]


def staged(warehouse: DuckDBWarehouse) -> list[str]:
    return [r["company_id"] for r in warehouse.run_sql("SELECT company_id FROM stg.crm_companies")]


def later(hours: float = 1) -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(hours=hours)


def test_a_lost_trigger_is_staged_once_its_trigger_had_time(resources: Resources, warehouse: DuckDBWarehouse) -> None:
    upload(resources, "crm_2025-03-09.csv", "lost")

    poison.sweep(resources, dt.datetime.now(dt.UTC))  # just uploaded: its own trigger may still come
    assert staging_runs(warehouse) == 0

    result = poison.sweep(resources, later())
    assert staged(warehouse) == ["lost"]
    assert [o.action for o in result.outcomes] == ["staged"]
    poison.sweep(resources, later(2))  # processed now: never again
    assert staging_runs(warehouse) == 1


def test_files_processed_before_version_records_existed_are_not_read_again(
    resources: Resources, warehouse: DuckDBWarehouse
) -> None:
    upload(resources, "crm_2025-03-09.csv", "a")
    resources.stage_crm_blob("crm_2025-03-09.csv")
    warehouse.run_sql("DELETE FROM ops.crm_blob_versions")  # as before migration 0008

    poison.sweep(resources, later())
    assert staging_runs(warehouse) == 1


def test_an_older_unprocessed_file_overtaken_by_a_later_one_is_not_staged_over_it(
    resources: Resources, warehouse: DuckDBWarehouse
) -> None:
    upload(resources, "crm_2025-03-09_first.csv", "old")  # its trigger was lost
    upload(resources, "crm_2025-03-09_second.csv", "new")
    resources.stage_crm_blob("crm_2025-03-09_second.csv")

    poison.sweep(resources, later())
    assert staged(warehouse) == ["new"]
    assert staging_runs(warehouse) == 1
