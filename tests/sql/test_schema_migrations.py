"""Schema apply is idempotent and versioned."""

from __future__ import annotations

import datetime as dt
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


def test_migration_0007_keeps_built_rows_and_leaves_the_new_columns_null_until_a_rebuild(tmp_path: Path) -> None:
    root = _copy_sql_root(tmp_path)
    later = sorted(p for p in (root / "schema").glob("*.sql") if int(p.name.split("_", 1)[0]) >= 7)
    held = {p: p.read_text() for p in later}
    for path in later:
        path.unlink()
    engine = DuckDBWarehouse(tmp_path / "w.duckdb", sql_root=root)
    engine.apply_schema()
    engine.run_sql(
        "INSERT INTO analytics.company_daily_activity (activity_date, company_id, active_users, events,"
        " active_users_7d, events_7d, active_days_7d, is_churn_risk, data_quality_flags, record_loaded_at, run_id)"
        " VALUES (@d, 'acme', 1, 2, 1, 2, 1, 0, '', @at, 'r1')",
        {"d": dt.date(2025, 1, 1), "at": dt.datetime(2025, 1, 2)},
    )
    for path, text in held.items():
        path.write_text(text)

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
