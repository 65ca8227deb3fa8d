"""The embedded engine: parameters, transactions, streaming bulk loads."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import pytest

from shared.adapters.warehouse.duckdb_engine import (
    BUILD_BYTES_PER_COMPANY_DAY,
    WRITE_BYTES_PER_COMPANY_DAY,
    DuckDBWarehouse,
    parse_bytes,
)
from shared.errors import BuildError, ConfigurationError

USAGE_COLUMNS = ["load_id", "activity_date", "company_id", "active_users", "events", "source_blob"]


@pytest.fixture
def engine() -> DuckDBWarehouse:
    wh = DuckDBWarehouse(":memory:")
    wh.apply_schema()
    return wh


def _landing_rows(engine: DuckDBWarehouse) -> list[dict]:
    return engine.run_sql("SELECT company_id, source_blob FROM stg.product_usage_landing ORDER BY company_id")


def test_bulk_load_keeps_awkward_text_verbatim(engine: DuckDBWarehouse) -> None:
    awkward = [
        "a,b",
        'say "hi"',
        "line\nbreak",
        "crlf\r\n",
        "'); DROP TABLE stg.product_usage;--",
        "ünïcødé ✓",
        "x" * 1_000_000,
    ]
    rows = [("L1", dt.date(2025, 1, 1), f"c{i}", 1, 2, text) for i, text in enumerate(awkward)]
    assert engine.bulk_load("stg.product_usage_landing", USAGE_COLUMNS, rows) == len(awkward)
    assert [r["source_blob"] for r in _landing_rows(engine)] == awkward
    assert engine.table_exists("stg", "product_usage")


def test_bulk_load_streams_in_batches(engine: DuckDBWarehouse, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(DuckDBWarehouse, "BULK_BATCH_ROWS", 7)
    consumed: list[int] = []

    def rows():
        for i in range(50):
            consumed.append(i)
            yield ("L1", dt.date(2025, 1, 1), f"c{i:03d}", i, i, "blob")

    assert engine.bulk_load("stg.product_usage_landing", USAGE_COLUMNS, rows()) == 50
    assert len(_landing_rows(engine)) == 50


def test_bulk_load_loads_empty_strings_as_null(engine: DuckDBWarehouse) -> None:
    engine.bulk_load(
        "stg.crm_companies_landing",
        ["load_id", "snapshot_date", "company_id", "company_name", "attributes_hash", "source_row"],
        [("L1", dt.date(2025, 1, 1), "c1", "", "h", 2)],
    )
    assert engine.run_sql("SELECT company_name FROM stg.crm_companies_landing") == [{"company_name": None}]


@pytest.mark.parametrize("table", ["stg.x; DROP TABLE y", "product_usage", "STG.X"])
def test_bulk_load_refuses_table_names_that_are_not_plain_identifiers(engine: DuckDBWarehouse, table: str) -> None:
    with pytest.raises(ValueError, match="table name"):
        engine.bulk_load(table, ["a"], [])


def test_transaction_rolls_back_everything_on_error(engine: DuckDBWarehouse) -> None:
    engine.bulk_load("stg.product_usage_landing", USAGE_COLUMNS, [("L1", dt.date(2025, 1, 1), "c1", 1, 1, "b")])
    with pytest.raises(RuntimeError), engine.transaction():
        engine.run_sql("DELETE FROM stg.product_usage_landing WHERE load_id = @id", {"id": "L1"})
        with engine.transaction():  # inner block joins the outer one
            engine.bulk_load("stg.product_usage_landing", USAGE_COLUMNS, [("L2", dt.date(2025, 1, 1), "c2", 1, 1, "b")])
        raise RuntimeError("half way")
    assert [r["company_id"] for r in _landing_rows(engine)] == ["c1"]


def test_missing_parameter_is_a_clear_error(engine: DuckDBWarehouse) -> None:
    with pytest.raises(BuildError, match=r"needs parameters \['load_id'\]"):
        engine.run_sql("DELETE FROM stg.product_usage_landing WHERE load_id = @load_id")


def test_values_are_bound_never_formatted(engine: DuckDBWarehouse) -> None:
    hostile = "x' OR '1'='1"
    engine.bulk_load("stg.product_usage_landing", USAGE_COLUMNS, [("L1", dt.date(2025, 1, 1), "c1", 1, 1, "b")])
    rows = engine.run_sql("SELECT COUNT(*) AS n FROM stg.product_usage_landing WHERE load_id = @id", {"id": hostile})
    assert rows == [{"n": 0}]


def test_concurrent_threads_share_one_engine_safely(engine: DuckDBWarehouse) -> None:
    def load(worker: int) -> None:
        for i in range(20):
            with engine.transaction():
                engine.bulk_load(
                    "stg.product_usage_landing",
                    USAGE_COLUMNS,
                    [(f"L{worker}", dt.date(2025, 1, 1), f"c{worker}-{i}", 1, 1, "b")],
                )

    threads = [threading.Thread(target=load, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert engine.run_sql("SELECT COUNT(*) AS n FROM stg.product_usage_landing") == [{"n": 80}]


def test_bulk_load_converts_aware_timestamps_to_utc_and_keeps_types(engine: DuckDBWarehouse) -> None:
    columns = ["run_id", "step", "run_date", "trigger_name", "status", "started_at", "finished_at", "rows_in"]
    berlin = dt.timezone(dt.timedelta(hours=2))
    rows = [
        ("r1", "s", None, "t", "ok", dt.datetime(2025, 1, 1, 12, 0), None, None),
        ("r2", "s", dt.date(2025, 1, 2), "", "ok", dt.datetime(2025, 1, 1, 12, 0, tzinfo=berlin), None, 5),
    ]
    engine.bulk_load("ops.pipeline_runs", columns, rows)
    got = engine.run_sql(
        "SELECT run_id, run_date, trigger_name, started_at, rows_in FROM ops.pipeline_runs ORDER BY run_id"
    )
    assert got == [
        {
            "run_id": "r1",
            "run_date": None,
            "trigger_name": "t",
            "started_at": dt.datetime(2025, 1, 1, 12),
            "rows_in": None,
        },
        {
            "run_id": "r2",
            "run_date": dt.date(2025, 1, 2),
            "trigger_name": None,
            "started_at": dt.datetime(2025, 1, 1, 10),
            "rows_in": 5,
        },
    ]


def test_aware_parameters_are_stored_as_naive_utc_whatever_the_session_time_zone(engine: DuckDBWarehouse) -> None:
    """Services pass the one clock's aware UTC; the column holds UTC wall time, as on Azure SQL."""
    engine._con.execute("SET TimeZone = 'America/New_York'")  # a developer laptop's local zone
    berlin = dt.timezone(dt.timedelta(hours=2))
    engine.run(
        "ops/pipeline_runs__start",
        {
            "run_id": "r1",
            "step": "s",
            "run_date": None,
            "trigger_name": None,
            "started_at": dt.datetime(2025, 1, 1, 12, 0, tzinfo=berlin),
        },
    )
    assert engine.run_sql("SELECT started_at FROM ops.pipeline_runs") == [{"started_at": dt.datetime(2025, 1, 1, 10)}]


def test_memory_limit_caps_duckdb_and_sizes_the_builds_pieces() -> None:
    capped = DuckDBWarehouse(":memory:", memory_limit="512MB")
    assert capped.run_sql("SELECT current_setting('memory_limit') AS v")[0]["v"] in {"488.2 MiB", "488.2MiB"}
    # Half the cap for a piece's work, half for the open transaction's writes.
    assert capped.build_piece_company_days == 256_000_000 // BUILD_BYTES_PER_COMPANY_DAY
    assert capped.build_transaction_company_days == 256_000_000 // WRITE_BYTES_PER_COMPANY_DAY
    uncapped = DuckDBWarehouse(":memory:")
    assert uncapped.build_piece_company_days is None and uncapped.build_transaction_company_days is None


def test_memory_sizes_are_read_in_duckdbs_units_and_nonsense_names_the_setting() -> None:
    assert parse_bytes("1.5GB") == 1_500_000_000
    assert parse_bytes("2 GiB") == 2 * 1024**3
    with pytest.raises(ConfigurationError, match="DUCKDB_MEMORY_LIMIT"):
        parse_bytes("lots")


# ---- column batches (the CRM landing load) ------------------------------------------------------
CRM_COLUMNS = [
    "load_id",
    "snapshot_date",
    "company_id",
    "company_name",
    "last_contact_at",
    "attributes_hash",
    "source_row",
]


def test_bulk_load_columns_loads_each_batch_with_the_values_bulk_load_would() -> None:
    by_rows, by_columns = DuckDBWarehouse(":memory:"), DuckDBWarehouse(":memory:")
    for wh in (by_rows, by_columns):
        wh.apply_schema()
    berlin = dt.timezone(dt.timedelta(hours=2))
    rows = [
        ("L1", dt.date(2025, 1, 1), "c1", 'a,b "q"\nline', dt.datetime(2025, 1, 1, 12, 0, 0, 5), "h1", 2),
        ("L1", dt.date(2025, 1, 1), "c2", "", None, "h2", 3),
        ("L1", dt.date(2025, 1, 1), "c3", None, dt.datetime(2025, 1, 1, 12, 0, tzinfo=berlin), "h3", 4),
    ]
    by_rows.bulk_load("stg.crm_companies_landing", CRM_COLUMNS, rows)
    batches = [list(zip(*rows[:2], strict=True)), list(zip(*rows[2:], strict=True))]
    assert by_columns.bulk_load_columns("stg.crm_companies_landing", CRM_COLUMNS, batches) == 3
    query = f"SELECT {', '.join(CRM_COLUMNS)} FROM stg.crm_companies_landing ORDER BY company_id"
    assert by_columns.run_sql(query) == by_rows.run_sql(query)
    assert by_columns.run_sql(query)[2]["last_contact_at"] == dt.datetime(2025, 1, 1, 10, 0)


def test_bulk_load_columns_writes_row_groups_uncompressed_and_leaves_compression_as_it_was(
    tmp_path: Path,
) -> None:
    import pyarrow as pa

    engine = DuckDBWarehouse(tmp_path / "w.duckdb")
    engine.apply_schema()
    rows = 122_880  # one row group: written to the file by the INSERT itself
    names = pa.array([f"Company {i % 7}" for i in range(rows)])
    batch = (["L1"] * rows, [dt.date(2025, 1, 1)] * rows, names, names, [None] * rows, names, list(range(rows)))
    assert engine.bulk_load_columns("stg.crm_companies_landing", CRM_COLUMNS, [batch]) == rows
    assert engine.run_sql("SELECT current_setting('force_compression') AS c") == [{"c": "auto"}]
    methods = engine.run_sql(
        "SELECT DISTINCT compression AS c FROM pragma_storage_info('stg.crm_companies_landing') "
        "WHERE column_name = 'company_name' AND segment_type = 'VARCHAR'"
    )
    assert methods == [{"c": "Uncompressed"}]  # seven distinct names: a dictionary otherwise


def test_bulk_load_columns_refuses_names_that_are_not_identifiers(engine: DuckDBWarehouse) -> None:
    with pytest.raises(ValueError, match="not a column name"):
        engine.bulk_load_columns("stg.crm_companies_landing", ["load_id; DROP"], [[["L1"]]])


def test_bulk_load_columns_gathers_batches_of_lists_and_arrow_arrays_into_inserts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import pyarrow as pa

    engine = DuckDBWarehouse(":memory:")
    engine.apply_schema()
    monkeypatch.setattr(engine, "BULK_COLUMNS_ROWS", 2)  # an INSERT per two rows: groups end mid-way
    day = dt.date(2025, 1, 1)
    batches = [
        (["L1"], [day], ["c1"], [None], [None], ["h1"], [2]),  # all-NULL columns: Arrow's null type
        (["L1"], [day], pa.array(["c2"]), pa.array(["B"]), pa.array([dt.datetime(2025, 1, 1)]), ["h2"], [3]),
        (["L1", "L1"], [day, day], ["c3", "c4"], ["", "D"], [None, dt.datetime(2025, 1, 2)], ["h3", "h4"], [4, 5]),
    ]
    assert engine.bulk_load_columns("stg.crm_companies_landing", CRM_COLUMNS, batches) == 4
    rows = engine.run_sql(
        "SELECT company_id, company_name, last_contact_at, source_row FROM stg.crm_companies_landing ORDER BY 1"
    )
    assert [tuple(r.values()) for r in rows] == [
        ("c1", None, None, 2),
        ("c2", "B", dt.datetime(2025, 1, 1), 3),
        ("c3", None, None, 4),
        ("c4", "D", dt.datetime(2025, 1, 2), 5),
    ]
