"""Schema apply is idempotent and versioned."""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
from pathlib import Path

import pytest

from shared.adapters.warehouse.duckdb_engine import DuckDBWarehouse
from shared.adapters.warehouse.sql_files import SQL_ROOT, migrations
from shared.errors import BuildError


def _tables(engine: DuckDBWarehouse) -> set[str]:
    rows = engine.run_sql(
        "SELECT TABLE_SCHEMA AS s, TABLE_NAME AS t FROM INFORMATION_SCHEMA.TABLES WHERE TABLE_SCHEMA <> @main",
        {"main": "main"},
    )
    return {f"{r['s']}.{r['t']}" for r in rows}


def test_apply_creates_every_layer_of_the_spec() -> None:
    engine = DuckDBWarehouse(":memory:")
    engine.apply_schema()
    tables = _tables(engine)
    for required in (
        "stg.crm_companies",
        "stg.product_usage",
        "dim.companies",
        "analytics.company_daily_activity",
        "ops.pipeline_runs",
        "ops.data_quality_results",
        "agg.company_daily_events",
        "ops.schema_migrations",
    ):
        assert required in tables


def test_second_apply_is_a_no_op(tmp_path: Path) -> None:
    engine = DuckDBWarehouse(tmp_path / "w.duckdb")
    first = engine.apply_schema()
    before = _tables(engine)
    engine.close()

    reopened = DuckDBWarehouse(tmp_path / "w.duckdb")
    assert first == [v for v, _ in migrations()]
    assert reopened.apply_schema() == []
    assert _tables(reopened) == before


def _copy_sql_root(tmp_path: Path) -> Path:
    root = tmp_path / "sql"
    shutil.copytree(SQL_ROOT, root)
    return root


def _warehouse_before(tmp_path: Path, version: int) -> tuple[DuckDBWarehouse, dict[Path, str]]:
    """A warehouse migrated to just before migration ``version``, and the migrations held back
    from it (path -> text): ``_release`` them and apply again to migrate a warehouse with rows."""
    root = _copy_sql_root(tmp_path)
    later = sorted(p for p in (root / "schema").glob("*.sql") if int(p.name.split("_", 1)[0]) >= version)
    held = {p: p.read_text() for p in later}
    for path in later:
        path.unlink()
    engine = DuckDBWarehouse(tmp_path / "w.duckdb", sql_root=root)
    assert max(engine.apply_schema()) == version - 1
    return engine, held


def _release(held: dict[Path, str]) -> None:
    for path, text in held.items():
        path.write_text(text)


def test_new_migration_adds_a_column_without_losing_rows(tmp_path: Path) -> None:
    root = _copy_sql_root(tmp_path)
    engine = DuckDBWarehouse(tmp_path / "w.duckdb", sql_root=root)
    engine.apply_schema()
    engine.run_sql(
        "INSERT INTO ops.date_builds (activity_date, row_count, built_at, run_id) VALUES (@d, 3, @at, @run)",
        {"d": dt.date(2025, 1, 1), "at": dt.datetime(2025, 1, 2), "run": "r1"},
    )
    latest = max(v for v, _ in migrations(root))
    (root / "schema" / f"{latest + 1:04d}_add_build_note.sql").write_text(
        "-- Purpose: test migration.\nALTER TABLE ops.date_builds ADD build_note NVARCHAR(200) NULL;\n"
    )

    assert engine.apply_schema() == [latest + 1]
    rows = engine.run_sql("SELECT activity_date, row_count, build_note FROM ops.date_builds")
    assert rows == [{"activity_date": dt.date(2025, 1, 1), "row_count": 3, "build_note": None}]
    assert engine.apply_schema() == []


def test_editing_an_applied_migration_is_refused(tmp_path: Path) -> None:
    root = _copy_sql_root(tmp_path)
    engine = DuckDBWarehouse(":memory:", sql_root=root)
    engine.apply_schema()
    first = root / "schema" / f"{migrations(root)[0][1].split('/')[1]}.sql"
    first.write_text(first.read_text() + "\n-- edited\n")
    with pytest.raises(BuildError, match="changed after it was applied"):
        engine.apply_schema()


def test_failed_migration_leaves_the_previous_version(tmp_path: Path) -> None:
    root = _copy_sql_root(tmp_path)
    engine = DuckDBWarehouse(":memory:", sql_root=root)
    engine.apply_schema()
    latest = max(v for v, _ in migrations(root))
    (root / "schema" / f"{latest + 1:04d}_broken.sql").write_text(
        "CREATE TABLE ops.half_done (a INT NOT NULL);\nINSERT INTO ops.no_such_table (a) VALUES (1);\n"
    )
    with pytest.raises(BuildError):
        engine.apply_schema()
    assert "ops.half_done" not in _tables(engine)
    versions = {r["version"] for r in engine.run_sql("SELECT version FROM ops.schema_migrations")}
    assert latest + 1 not in versions


def test_crm_snapshot_version_migration_fills_existing_builds_from_staging(tmp_path: Path) -> None:
    """0011: builds recorded before it take the hash of the snapshot staged for their snapshot
    date, so upgrading does not make every built day look changed (and rebuild all history)."""
    root = _copy_sql_root(tmp_path)
    migration = root / "schema" / "0011_date_builds_crm_snapshot_version.sql"
    held_back = migration.read_text()
    migration.unlink()
    engine = DuckDBWarehouse(":memory:", sql_root=root)
    engine.apply_schema()
    at = dt.datetime(2025, 1, 2)
    engine.run_sql(
        "INSERT INTO stg.crm_snapshots VALUES (@d, 'crm.csv', 'hash-1', 1, 0, 0, @at, 'r0')",
        {"d": dt.date(2025, 1, 1), "at": at},
    )
    for day, snapshot in ((dt.date(2025, 1, 1), dt.date(2025, 1, 1)), (dt.date(2024, 12, 31), None)):
        engine.run_sql(
            "INSERT INTO ops.date_builds (activity_date, crm_snapshot_date, row_count, built_at, run_id)"
            " VALUES (@d, @s, 1, @at, 'r1')",
            {"d": day, "s": snapshot, "at": at},
        )
    migration.write_text(held_back)

    assert 11 in engine.apply_schema()
    rows = engine.run_sql("SELECT activity_date, crm_snapshot_version FROM ops.date_builds ORDER BY activity_date")
    assert rows == [
        {"activity_date": dt.date(2024, 12, 31), "crm_snapshot_version": None},
        {"activity_date": dt.date(2025, 1, 1), "crm_snapshot_version": "hash-1"},
    ]
    assert engine.run("ops/date_builds__crm_snapshot_changed") == []


def test_migration_0007_keeps_built_rows_and_leaves_the_new_columns_null_until_a_rebuild(tmp_path: Path) -> None:
    engine, held = _warehouse_before(tmp_path, 7)
    engine.run_sql(
        "INSERT INTO analytics.company_daily_activity (activity_date, company_id, active_users, events,"
        " active_users_7d, events_7d, active_days_7d, is_churn_risk, data_quality_flags, record_loaded_at, run_id)"
        " VALUES (@d, 'acme', 1, 2, 1, 2, 1, 0, '', @at, 'r1')",
        {"d": dt.date(2025, 1, 1), "at": dt.datetime(2025, 1, 2)},
    )
    _release(held)

    assert 7 in engine.apply_schema()
    rows = engine.run_sql(
        "SELECT company_id, events, active_users_28d, events_7d_change_pct, engagement_consistency_28d"
        " FROM analytics.company_daily_activity_current"
    )
    assert rows == [
        {
            "company_id": "acme",
            "events": 2,
            "active_users_28d": None,
            "events_7d_change_pct": None,
            "engagement_consistency_28d": None,
        }
    ]
    assert engine.run_sql("SELECT events, days_present FROM analytics.company_weekly_activity") == [
        {"events": 2, "days_present": 1}
    ]


def test_migration_0016_keeps_every_crm_row_and_drops_the_key_on_duckdb(tmp_path: Path) -> None:
    """0016 rebuilds stg.crm_companies without its primary key (Azure SQL: a unique clustered
    index instead; DuckDB: no index, the duplicate_keys check verifies the grain): a warehouse
    at 0015 holding snapshots keeps every row and value, and the table then takes new ones."""
    engine, held = _warehouse_before(tmp_path, 16)
    columns = (
        "snapshot_date, company_id, company_name, country, industry_tag, last_contact_at, attributes_hash, "
        "source_blob, source_row, ingested_at, run_id"
    )
    at = dt.datetime(2025, 1, 2, 3, 4, 5, 678901)
    for day in (dt.date(2025, 1, 1), dt.date(2025, 1, 2)):
        for row, company in enumerate(("acme", "ACME", "globex"), start=2):
            engine.run_sql(
                f"INSERT INTO stg.crm_companies ({columns}) VALUES "
                "(@d, @c, @name, @country, NULL, @contact, @hash, 'crm.csv', @row, @at, 'r1')",
                {
                    "d": day,
                    "c": company,
                    "name": f"{company} Ltd" if row != 4 else None,
                    "country": "DE",
                    "contact": at if row == 2 else None,
                    "hash": f"h-{company}-{day}",
                    "row": row,
                    "at": at,
                },
            )
    order = "ORDER BY snapshot_date, company_id"
    before = engine.run_sql(f"SELECT {columns} FROM stg.crm_companies {order}")
    _release(held)

    assert 16 in engine.apply_schema()
    assert engine.run_sql(f"SELECT {columns} FROM stg.crm_companies {order}") == before
    assert len(before) == 6
    keys = engine.run_sql(
        "SELECT COUNT(*) AS n FROM duckdb_constraints() WHERE schema_name = 'stg' AND table_name = 'crm_companies'"
        " AND constraint_type IN ('PRIMARY KEY', 'UNIQUE')"
    )
    assert keys == [{"n": 0}]
    assert not engine.table_exists("stg", "crm_companies_unkeyed")
    engine.run_sql(
        f"INSERT INTO stg.crm_companies ({columns}) VALUES "
        "(@d, 'initech', NULL, NULL, NULL, NULL, 'h', 'crm.csv', 2, @at, 'r2')",
        {"d": dt.date(2025, 1, 3), "at": at},
    )
    assert engine.run_sql("SELECT COUNT(*) AS n FROM stg.crm_companies") == [{"n": 7}]


# SHA-256 of each migration as applied to warehouses: a changed one makes the app refuse to start
# (require_current_schema). Guards against a reformat (`sqlfluff fix sql`, an editor) rewriting
# them; a new migration is added as a new file, and pinned here once it has been applied.
APPLIED_MIGRATIONS = {
    "schema/0001_schemas": "8d8efe4e4b72cbc1ccd1271ecfae211141ad7a8ee5a2610ea0e9dfff68163954",
    "schema/0002_staging": "5a1232fe318a428f725c915923f2677c77cd62a0064fc736b20d12d3a5e3c5c0",
    "schema/0003_dim": "fa0dc4401711cb0081523aecf6f9bb87da52cd577cae20786d3cf7cae25d9ec3",
    "schema/0004_analytics": "f89970c0d474f4b44e1634749149e1551c6a8362241cd20aa253db801fadf49f",
    "schema/0005_ops": "33514e2f4c66b6c6cf0b6f8d0ec679be10572945039402d5689766e49d442a55",
    "schema/0006_agg": "ab8a912d874e185122ac5654a12076cfd97e7bc25c6b37cf403b2c930e112d65",
    "schema/0007_analytics_28d_trends": "876d3c1690a58c0d9f8214e6de8921ccee8752c1979969044f0461d39dd4a1cc",
    "schema/0008_recovery": "be6b8ec8ad23c1d3c37ea9159a0b345729f29c5c46b09c3b6345d1ef585e33a4",
    "schema/0009_input_freshness": "efbcbae705f48c441d40dc07bad913154ba8e5e0690c54ca967b0ee1bf4793f9",
    "schema/0010_alert_deliveries": "07a668c5f3391d14a3194dff4e297d21a8eb9805306ceabde35221e2f39c15b7",
    "schema/0011_date_builds_crm_snapshot_version": "27780d3aaf537994548ea7e10ca40ec3ba397dfe0da1ec92e49252d476277eeb",
}


@pytest.mark.parametrize("name", sorted(APPLIED_MIGRATIONS))
def test_an_applied_migration_is_never_rewritten(name: str) -> None:
    text = (SQL_ROOT / f"{name}.sql").read_bytes()
    assert hashlib.sha256(text).hexdigest() == APPLIED_MIGRATIONS[name], f"{name}.sql changed: add a migration instead"
