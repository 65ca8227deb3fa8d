"""Migrations are a deploy step: the app checks the schema version and refuses to run behind it;
`schema bootstrap` (the azd post-provision hook) applies them and creates the app's database user."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline_tools.cli import cli
from pipeline_tools.schema_bootstrap import apply_migrations, bootstrap, check_principal_name
from shared.adapters.warehouse.duckdb_engine import DuckDBWarehouse
from shared.adapters.warehouse.sql_files import load_statements, migrations, to_positional
from shared.errors import ConfigurationError, SchemaOutOfDate
from shared.settings import Settings
from shared.wiring import Resources


def _settings(tmp_path: Path) -> Settings:
    return Settings(DUCKDB_PATH=str(tmp_path / "w.duckdb"))


def test_the_app_refuses_a_warehouse_without_migrations_naming_the_deploy_step(tmp_path: Path) -> None:
    with pytest.raises(SchemaOutOfDate, match=r"0001_schemas.*schema apply"):
        _ = Resources(_settings(tmp_path)).warehouse


def test_the_app_runs_no_ddl_on_a_warehouse_behind_it(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    with pytest.raises(SchemaOutOfDate):
        _ = Resources(settings).warehouse
    engine = DuckDBWarehouse(settings.duckdb_path)
    assert not engine.table_exists("ops", "schema_migrations")
    engine.close()


def test_after_the_deploy_step_the_app_accepts_the_warehouse(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    applied = apply_migrations(settings)
    assert applied == [name for _, name in migrations()]
    warehouse = Resources(settings).warehouse
    assert warehouse.table_exists("ops", "schema_migrations")
    warehouse.close()


def test_one_missing_migration_is_enough_to_refuse(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    apply_migrations(settings)
    engine = DuckDBWarehouse(settings.duckdb_path)
    latest_version, latest_name = migrations()[-1]
    engine.run_sql("DELETE FROM ops.schema_migrations WHERE version = @v", {"v": latest_version})
    engine.close()
    with pytest.raises(SchemaOutOfDate, match=latest_name.split("/")[1]):
        _ = Resources(settings).warehouse


@pytest.mark.parametrize("name", ["", "   ", "x" * 129, "app\nname"])
def test_a_principal_name_that_cannot_be_a_quoted_identifier_is_refused(name: str) -> None:
    with pytest.raises(ConfigurationError, match="--app-principal"):
        check_principal_name(name)


def test_a_function_app_name_is_a_valid_principal() -> None:
    assert check_principal_name("func-abc123]; DROP USER x --") == "func-abc123]; DROP USER x --"


@pytest.mark.parametrize("name", ["admin/app_identity__create_user", "admin/app_identity__grant"])
def test_the_principal_is_bound_and_quoted_by_the_server_never_formatted(name: str) -> None:
    (statement,) = load_statements(name)
    _, markers = to_positional(statement)
    assert markers == ("app_principal",)
    assert "QUOTENAME(@principal)" in statement.text


def test_bootstrap_on_the_embedded_engine_is_refused_clearly(tmp_path: Path) -> None:
    engine = DuckDBWarehouse(tmp_path / "w.duckdb")
    with pytest.raises(ConfigurationError, match="WAREHOUSE_ENGINE=azure_sql"):
        bootstrap(engine, "func-x")
    engine.close()


def test_cli_schema_bootstrap_names_the_engine_it_needs_in_one_line(tmp_path: Path) -> None:
    settings_file = tmp_path / "local.settings.json"
    settings_file.write_text(f'{{"Values": {{"DUCKDB_PATH": "{tmp_path / "w.duckdb"}"}}}}')
    result = CliRunner().invoke(cli, ["--settings", str(settings_file), "schema", "bootstrap", "--app-principal", "f"])
    assert result.exit_code == 1
    assert "WAREHOUSE_ENGINE=azure_sql" in result.output


def test_cli_schema_bootstrap_dry_run_on_duckdb_is_refused_the_same_way(tmp_path: Path) -> None:
    settings_file = tmp_path / "local.settings.json"
    settings_file.write_text(f'{{"Values": {{"DUCKDB_PATH": "{tmp_path / "w.duckdb"}"}}}}')
    result = CliRunner().invoke(
        cli, ["--settings", str(settings_file), "schema", "bootstrap", "--app-principal", "f", "--dry-run", "--json"]
    )
    assert result.exit_code == 1
    assert "WAREHOUSE_ENGINE=azure_sql" in result.output
    assert not (tmp_path / "w.duckdb").exists() or not DuckDBWarehouse(tmp_path / "w.duckdb").table_exists(
        "ops", "schema_migrations"
    )
