"""The validation limits are the T-SQL column types: parsed from the DDL, they must agree."""

from __future__ import annotations

from pathlib import Path

import sqlglot
from sqlglot import exp

from shared.rules.column_limits import BIGINT_MAX, INT_MAX, SOURCES

DDL = Path(__file__).parents[3] / "sql" / "schema" / "0002_staging.sql"
INTEGER_MAX = {"INT": INT_MAX, "BIGINT": BIGINT_MAX}


def ddl_columns(ddl: str | None = None) -> dict[tuple[str, str], tuple[str, int | None]]:
    """(table, column) -> (type name, length or None) of every CREATE TABLE in the DDL."""
    columns: dict[tuple[str, str], tuple[str, int | None]] = {}
    for statement in sqlglot.parse(ddl if ddl is not None else DDL.read_text(encoding="utf-8"), read="tsql"):
        if not isinstance(statement, exp.Create) or statement.kind != "TABLE":
            continue
        table = statement.this.this
        name = f"{table.db}.{table.name}"
        for column in statement.find_all(exp.ColumnDef):
            kind = column.args["kind"]
            size = [int(e.sql()) for e in kind.expressions if e.sql().isdigit()]
            columns[(name, column.name)] = (kind.this.name.replace("INTEGER", "INT"), size[0] if size else None)
    return columns


def test_every_limit_matches_its_column_in_the_staging_ddl() -> None:
    columns = ddl_columns()
    for (table, column), (type_name, limit) in SOURCES.items():
        ddl_type, ddl_length = columns[(table, column)]
        assert ddl_type == type_name, f"{table}.{column}"
        if type_name == "NVARCHAR":
            assert ddl_length == limit, f"{table}.{column}: NVARCHAR({ddl_length}) in the DDL, {limit} in the rules"
        else:
            assert INTEGER_MAX[ddl_type] == limit, f"{table}.{column}"


def test_the_landing_tables_have_the_same_limits_as_staging() -> None:
    columns = ddl_columns()
    for (table, column), _ in SOURCES.items():
        landing = columns[(f"{table}_landing", column)]
        assert landing == columns[(table, column)], f"{table}_landing.{column}"


def test_the_parser_sees_a_changed_length() -> None:
    changed = DDL.read_text(encoding="utf-8").replace("company_name NVARCHAR(400)", "company_name NVARCHAR(300)", 1)
    assert ddl_columns(changed)[("stg.crm_companies", "company_name")] == ("NVARCHAR", 300)
