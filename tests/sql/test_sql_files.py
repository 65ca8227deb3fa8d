"""Every file in sql/ is valid T-SQL (sqlfluff) and translates and runs on DuckDB."""

from __future__ import annotations

import duckdb
import pytest
import sqlfluff
from sqlfluff.api.simple import APIParsingError

from shared.adapters.warehouse.duckdb_engine import DuckDBWarehouse
from shared.adapters.warehouse.sql_files import SQL_ROOT, list_sql_files, load_statements
from shared.adapters.warehouse.translate import to_duckdb

SQL_FILES = list_sql_files()


def test_sql_folder_has_the_layers_of_the_spec() -> None:
    folders = {name.split("/", 1)[0] for name in SQL_FILES}
    assert {"schema", "ops"} <= folders


@pytest.mark.parametrize("name", SQL_FILES)
def test_file_parses_as_tsql_with_sqlfluff(name: str) -> None:
    text = (SQL_ROOT / f"{name}.sql").read_text(encoding="utf-8")
    try:
        sqlfluff.parse(text, dialect="tsql")
    except APIParsingError as exc:  # pragma: no cover - the assertion message is the point
        pytest.fail(f"{name}.sql does not parse as T-SQL: {exc}")


@pytest.fixture(scope="module")
def warehouse() -> DuckDBWarehouse:
    engine = DuckDBWarehouse(":memory:")
    engine.apply_schema()
    return engine


# schema/ is DDL (applied by the migration test); admin/ creates Entra database users, which the
# embedded engine does not have (pipeline_tools/schema_bootstrap.py refuses it there).
@pytest.mark.parametrize("name", [n for n in SQL_FILES if not n.startswith(("schema/", "admin/"))])
def test_file_translates_and_plans_on_duckdb(name: str, warehouse: DuckDBWarehouse) -> None:
    """EXPLAIN binds every table, column and function without running the statement."""
    con: duckdb.DuckDBPyConnection = warehouse._con
    for statement in load_statements(name):
        sql = to_duckdb(statement)
        if sql is None:
            continue
        params = {p: None for p in statement.parameter_names}
        try:
            con.execute(f"EXPLAIN {sql}", params)
        except duckdb.Error as exc:
            pytest.fail(f"{name}.sql statement {statement.index} does not run on DuckDB: {exc}\n{sql}")
