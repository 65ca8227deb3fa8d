"""dim.companies (SCD type 2) from CRM snapshots, on DuckDB, through the real SQL files.

Snapshots are loaded the way the service loads them (landing rows, then stg/crm_companies__load
and dim/companies__scd2 in one transaction), without the CSV layer. Expected versions are
written out; a property test compares any load order against a small pure-Python reference.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.adapters.warehouse.duckdb_engine import DuckDBWarehouse
from shared.rules.crm_rows import attributes_hash
from shared.services.crm_staging import LANDING_COLUMNS

Attrs = tuple[str | None, str | None]  # (company_name, country)
Snapshot = Mapping[str, Attrs]

S1, S2, S3, S4 = (dt.date(2025, 11, d) for d in (1, 2, 3, 4))


@pytest.fixture(scope="module")
def shared_warehouse() -> Iterator[DuckDBWarehouse]:
    engine = DuckDBWarehouse(":memory:")
    engine.apply_schema()
    yield engine
    engine.close()


@pytest.fixture
def warehouse(shared_warehouse: DuckDBWarehouse) -> DuckDBWarehouse:
    clear(shared_warehouse)
    return shared_warehouse


def clear(warehouse: DuckDBWarehouse) -> None:
    for table in ("stg.crm_companies", "stg.crm_snapshots", "stg.crm_companies_landing", "dim.companies"):
        warehouse.run_sql(f"DELETE FROM {table}")


_loads = itertools.count()


def load(warehouse: DuckDBWarehouse, snapshot_date: dt.date, companies: Snapshot) -> str:
    """Stage one snapshot and update the dim as the service does; returns the run id."""
    run_id = f"run{next(_loads)}"
    rows = [
        (
            run_id,
            snapshot_date,
            company_id,
            name,
            country,
            None,
            None,
            attributes_hash(name, country, None, None),
            i + 2,
        )
        for i, (company_id, (name, country)) in enumerate(sorted(companies.items()))
    ]
    warehouse.bulk_load("stg.crm_companies_landing", LANDING_COLUMNS, rows)
    with warehouse.transaction():
        warehouse.run(
            "stg/crm_companies__load",
            {
                "load_id": run_id,
                "snapshot_date": snapshot_date,
                "source_blob": f"crm_{snapshot_date}.csv",
                "content_hash": run_id,
                "rejected_row_count": 0,
                "ingested_at": dt.datetime(2025, 12, 1),
                "run_id": run_id,
            },
        )
        warehouse.run("dim/companies__scd2", {"snapshot_date": snapshot_date, "load_id": run_id, "run_id": run_id})
    return run_id


def versions(warehouse: DuckDBWarehouse) -> list[tuple[Any, ...]]:
    rows = warehouse.run_sql(
        "SELECT company_id, valid_from, valid_to, is_current, company_name, country FROM dim.companies "
        "ORDER BY company_id, valid_from"
    )
    return [tuple(r.values()) for r in rows]


def as_of(warehouse: DuckDBWarehouse, day: dt.date) -> dict[str, Attrs]:
    """How the builder reads the dim for a day."""
    rows = warehouse.run_sql(
        "SELECT company_id, company_name, country FROM dim.companies "
        "WHERE valid_from <= @day AND (valid_to IS NULL OR valid_to > @day)",
        {"day": day},
    )
    return {r["company_id"]: (r["company_name"], r["country"]) for r in rows}


# Three snapshots: c1 is renamed at S2, c2 moves country at S3, c3 is absent from S2 and back at
# S3, c4 never changes.
HISTORY: dict[dt.date, Snapshot] = {
    S1: {"c1": ("Acme", "DE"), "c2": ("Beta", "FR"), "c3": ("Gamma", "US"), "c4": ("Delta", "NL")},
    S2: {"c1": ("Acme Corp", "DE"), "c2": ("Beta", "FR"), "c4": ("Delta", "NL")},
    S3: {"c1": ("Acme Corp", "DE"), "c2": ("Beta", "IT"), "c3": ("Gamma", "US"), "c4": ("Delta", "NL")},
}
EXPECTED = [
    ("c1", S1, S2, False, "Acme", "DE"),
    ("c1", S2, None, True, "Acme Corp", "DE"),
    ("c2", S1, S3, False, "Beta", "FR"),
    ("c2", S3, None, True, "Beta", "IT"),
    ("c3", S1, S2, False, "Gamma", "US"),
    ("c3", S3, None, True, "Gamma", "US"),
    ("c4", S1, None, True, "Delta", "NL"),
]


def test_rename_country_change_and_a_company_that_leaves_and_comes_back(warehouse: DuckDBWarehouse) -> None:
    for day in (S1, S2, S3):
        load(warehouse, day, HISTORY[day])
    assert versions(warehouse) == EXPECTED


def test_first_snapshot_opens_one_current_version_per_company(warehouse: DuckDBWarehouse) -> None:
    load(warehouse, S1, HISTORY[S1])
    assert versions(warehouse) == [(c, S1, None, True, *attrs) for c, attrs in sorted(HISTORY[S1].items())]


def test_an_unchanged_company_writes_nothing(warehouse: DuckDBWarehouse) -> None:
    first_run = load(warehouse, S1, HISTORY[S1])
    load(warehouse, S2, HISTORY[S2])
    load(warehouse, S3, HISTORY[S3])
    rows = warehouse.run_sql("SELECT valid_from, run_id FROM dim.companies WHERE company_id = 'c4'")
    assert rows == [{"valid_from": S1, "run_id": first_run}]


def test_a_company_absent_from_the_latest_snapshot_has_its_version_closed_there(warehouse: DuckDBWarehouse) -> None:
    load(warehouse, S1, HISTORY[S1])
    load(warehouse, S2, HISTORY[S2])
    assert [v for v in versions(warehouse) if v[0] == "c3"] == [("c3", S1, S2, False, "Gamma", "US")]


def test_null_attributes_compare_equal_to_null_and_differ_from_values(warehouse: DuckDBWarehouse) -> None:
    load(warehouse, S1, {"c1": (None, "DE")})
    load(warehouse, S2, {"c1": (None, "DE")})
    load(warehouse, S3, {"c1": (None, "DE")})
    load(warehouse, S4, {"c1": ("Acme", "DE")})
    assert versions(warehouse) == [("c1", S1, S4, False, None, "DE"), ("c1", S4, None, True, "Acme", "DE")]


@pytest.mark.parametrize("order", list(itertools.permutations([S1, S2, S3])))
def test_any_load_order_gives_the_versions_of_date_order(
    warehouse: DuckDBWarehouse, order: tuple[dt.date, ...]
) -> None:
    for day in order:
        load(warehouse, day, HISTORY[day])
    assert versions(warehouse) == EXPECTED


def test_replacing_a_middle_snapshot_recomputes_the_versions_after_it(warehouse: DuckDBWarehouse) -> None:
    for day in (S1, S2, S3):
        load(warehouse, day, HISTORY[day])
    # The corrected S2 has c3 (so it never left) and c1 under its old name until S3.
    load(warehouse, S2, {**HISTORY[S1]})
    assert versions(warehouse) == [
        ("c1", S1, S3, False, "Acme", "DE"),
        ("c1", S3, None, True, "Acme Corp", "DE"),
        ("c2", S1, S3, False, "Beta", "FR"),
        ("c2", S3, None, True, "Beta", "IT"),
        ("c3", S1, None, True, "Gamma", "US"),
        ("c4", S1, None, True, "Delta", "NL"),
    ]


def test_replacing_the_latest_snapshot_to_undo_a_change_reopens_the_earlier_version(
    warehouse: DuckDBWarehouse,
) -> None:
    # c1 has the same hash in S1 and the corrected S2, but its open version (Acme Corp, from S2)
    # does not say so: it is not left out as unchanged, the versions are recomputed.
    load(warehouse, S1, HISTORY[S1])
    load(warehouse, S2, HISTORY[S2])
    load(warehouse, S2, {**HISTORY[S2], "c1": ("Acme", "DE")})
    assert [v for v in versions(warehouse) if v[0] in ("c1", "c4")] == [
        ("c1", S1, None, True, "Acme", "DE"),
        ("c4", S1, None, True, "Delta", "NL"),
    ]


def test_replacing_the_latest_snapshot_without_a_company_new_in_it_removes_that_company(
    warehouse: DuckDBWarehouse,
) -> None:
    # c5 appeared only in the first S2: with no row from the anchor (S1) on, it is not recomputed;
    # its version, which starts at S2, is deleted. c1's version from S1 stays untouched.
    first_run = load(warehouse, S1, {"c1": ("Acme", "DE")})
    load(warehouse, S2, {"c1": ("Acme", "DE"), "c5": ("Epsilon", "SE")})
    load(warehouse, S2, {"c1": ("Acme", "DE")})
    assert versions(warehouse) == [("c1", S1, None, True, "Acme", "DE")]
    assert warehouse.run_sql("SELECT run_id FROM dim.companies") == [{"run_id": first_run}]


def test_reading_as_of_a_day_gives_the_latest_snapshot_on_or_before_it(warehouse: DuckDBWarehouse) -> None:
    load(warehouse, S1, HISTORY[S1])
    load(warehouse, S3, HISTORY[S3])  # no snapshot for S2: S1 stays in force that day
    assert as_of(warehouse, S1 - dt.timedelta(days=1)) == {}
    assert as_of(warehouse, S2) == HISTORY[S1]
    assert as_of(warehouse, S3) == HISTORY[S3]
    assert as_of(warehouse, S3 + dt.timedelta(days=30)) == HISTORY[S3]


def test_the_work_table_is_left_empty(warehouse: DuckDBWarehouse) -> None:
    load(warehouse, S1, HISTORY[S1])
    assert warehouse.run_sql("SELECT COUNT(*) AS n FROM dim.companies_rebuild") == [{"n": 0}]


# ---- property: any order of loads, including re-loads, matches the reference ---------------
def reference_versions(history: Mapping[dt.date, Snapshot]) -> list[tuple[Any, ...]]:
    """SCD2 by walking the snapshots in date order, one company at a time."""
    dates = sorted(history)
    result = []
    for company in sorted({c for snapshot in history.values() for c in snapshot}):
        open_version: list[Any] | None = None
        for day in dates:
            attrs = history[day].get(company)
            if open_version is not None and attrs != open_version[1]:
                result.append((company, open_version[0], day, False, *open_version[1]))
                open_version = None
            if open_version is None and attrs is not None:
                open_version = [day, attrs]
        if open_version is not None:
            result.append((company, open_version[0], None, True, *open_version[1]))
    return result


attrs_strategy = st.sampled_from([("A", "DE"), ("A", "FR"), ("B", "DE"), (None, "DE"), ("A", None)])
snapshot_strategy = st.dictionaries(st.sampled_from(["c1", "c2", "c3"]), attrs_strategy, min_size=1)
# A sequence of (day index, content) loads: a day loaded twice is a corrected re-upload.
loads_strategy = st.lists(st.tuples(st.integers(0, 4), snapshot_strategy), min_size=1, max_size=7)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(loads=loads_strategy)
def test_property_any_sequence_of_loads_matches_the_date_order_reference(
    shared_warehouse: DuckDBWarehouse, loads: list[tuple[int, dict[str, Attrs]]]
) -> None:
    clear(shared_warehouse)
    final: dict[dt.date, Snapshot] = {}
    for index, snapshot in loads:
        day = S1 + dt.timedelta(days=index)
        load(shared_warehouse, day, snapshot)
        final[day] = snapshot
    assert versions(shared_warehouse) == reference_versions(final)
