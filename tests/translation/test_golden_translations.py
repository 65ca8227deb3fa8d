"""Golden T-SQL → DuckDB pairs: one per construct the rewrite layer handles or refuses."""

from __future__ import annotations

import pytest

from shared.adapters.warehouse.duckdb_engine import DuckDBWarehouse
from shared.adapters.warehouse.sql_files import split_statements
from shared.adapters.warehouse.translate import to_duckdb
from shared.errors import TranslationError


def translate(tsql: str) -> str | None:
    (statement,) = split_statements(tsql, "golden.sql")
    return to_duckdb(statement)


@pytest.mark.parametrize(
    ("tsql", "duckdb"),
    [
        pytest.param(
            "CREATE TABLE s.t (a DATE NOT NULL, flag BIT NOT NULL, PRIMARY KEY (a, flag))",
            "CREATE TABLE s.t (a DATE NOT NULL, flag BOOLEAN NOT NULL, PRIMARY KEY (a, flag))",
            id="bit-is-boolean-and-key-columns-plain",
        ),
        pytest.param("CREATE TABLE s.t (x FLOAT NULL)", "CREATE TABLE s.t (x DOUBLE NULL)", id="float-is-double"),
        pytest.param(
            "SELECT DATEADD(DAY, -6, d) AS w FROM s.t", "SELECT d + -6 AS w FROM s.t", id="dateadd-day-stays-date"
        ),
        pytest.param("SELECT DATEADD(day, 1, @d) AS w", "SELECT $d + 1 AS w", id="parameter-becomes-named"),
        pytest.param(
            "MERGE INTO s.t AS tgt USING s.u AS src ON tgt.a = src.a "
            "WHEN MATCHED THEN UPDATE SET tgt.b = src.b "
            "WHEN NOT MATCHED BY TARGET THEN INSERT (a, b) VALUES (src.a, src.b);",
            "MERGE INTO s.t AS tgt USING s.u AS src ON tgt.a = src.a "
            "WHEN MATCHED THEN UPDATE SET b = src.b WHEN NOT MATCHED THEN INSERT (a, b) VALUES (src.a, src.b)",
            id="merge-set-targets-unqualified",
        ),
        pytest.param(
            "SELECT TOP 5 a FROM s.t ORDER BY a", "SELECT a FROM s.t ORDER BY a NULLS FIRST LIMIT 5", id="top"
        ),
        pytest.param("SELECT ISNULL(a, 0) AS a FROM s.t", "SELECT COALESCE(a, 0) AS a FROM s.t", id="isnull"),
        pytest.param(
            "SELECT IIF(a > 0, 1, 0) AS p FROM s.t", "SELECT CASE WHEN a > 0 THEN 1 ELSE 0 END AS p FROM s.t", id="iif"
        ),
        pytest.param("CREATE INDEX ix_t_a ON s.t (a, b)", None, id="secondary-index-skipped"),
    ],
)
def test_golden_translation(tsql: str, duckdb: str | None) -> None:
    assert translate(tsql) == duckdb


@pytest.mark.parametrize(
    ("tsql", "reason"),
    [
        pytest.param("SELECT SYSUTCDATETIME() AS now", "must not read the clock", id="sysutcdatetime"),
        pytest.param("SELECT GETDATE() AS now", "must not read the clock", id="getdate"),
        pytest.param("SELECT CURRENT_TIMESTAMP AS now", "must not read the clock", id="current-timestamp"),
        pytest.param("IF 1 = 1 BEGIN SELECT 1 END", "not supported", id="if-block"),
        pytest.param("DECLARE @x INT", "DECLARE", id="declare"),
        pytest.param("CREATE TABLE s.t (id INT IDENTITY(1, 1))", "IDENTITY", id="identity"),
        pytest.param("DELETE t FROM s.t AS t JOIN s.u AS u ON t.a = u.a", "DELETE alias FROM", id="delete-alias-from"),
        pytest.param("WITH RECURSIVE c AS (SELECT 1 AS n) SELECT n FROM c", "recursive", id="recursive-cte"),
        pytest.param("SELECT a FROM #scratch", "temp tables", id="temp-table"),
        pytest.param("SELEC a FROM s.t", "cannot parse", id="not-sql"),
    ],
)
def test_untranslatable_constructs_fail_loudly_naming_file_and_statement(tsql: str, reason: str) -> None:
    with pytest.raises(TranslationError, match=reason) as info:
        translate(tsql)
    assert info.value.sql_file == "golden.sql"
    assert info.value.statement_index == 1


def test_if_block_does_not_swallow_the_statements_after_it() -> None:
    """sqlglot silently folds statements after an IF into it; splitting first prevents that."""
    statements = split_statements("SELECT 1 AS a; IF 1 = 1 BEGIN SELECT 2 END; SELECT 3 AS c;", "x.sql")
    assert [s.index for s in statements] == [1, 2, 3]
    assert to_duckdb(statements[0]) == "SELECT 1 AS a"
    assert to_duckdb(statements[2]) == "SELECT 3 AS c"
    with pytest.raises(TranslationError):
        to_duckdb(statements[1])


def test_semicolons_inside_strings_and_comments_do_not_split() -> None:
    statements = split_statements("SELECT 'a;b' AS s; -- c;d\nSELECT 2 AS n /* e;f */;", "x.sql")
    assert [s.text for s in statements] == ["SELECT 'a;b' AS s", "SELECT 2 AS n"]


def test_parameters_are_listed_in_order_with_repeats() -> None:
    (statement,) = split_statements("SELECT @a AS x, '@not_a_param' AS y, @b AS z, @a AS w", "x.sql")
    assert statement.parameters == ("a", "b", "a")


def test_translated_semantics_run_on_duckdb() -> None:
    """The rewrites are not just text: the results are the T-SQL results."""
    engine = DuckDBWarehouse(":memory:")
    engine.run_sql("CREATE SCHEMA s")
    engine.run_sql("CREATE TABLE s.t (a DATE NOT NULL, flag BIT NOT NULL, x FLOAT NULL, PRIMARY KEY (a))")
    engine.run_sql(
        "INSERT INTO s.t (a, flag, x) VALUES (@a, @flag, @x)", {"a": "2025-03-01", "flag": True, "x": 0.1 + 0.2}
    )
    (row,) = engine.run_sql(
        "SELECT DATEADD(DAY, -1, a) AS prev, flag, x, DATEDIFF(DAY, a, @d) AS gap FROM s.t", {"d": "2025-03-31"}
    )
    import datetime as dt

    assert row == {"prev": dt.date(2025, 2, 28), "flag": True, "x": 0.30000000000000004, "gap": 30}


def test_binary_collation_is_dropped_for_duckdb_which_compares_binary() -> None:
    assert (
        translate("CREATE TABLE s.t (company_id NVARCHAR(64) COLLATE Latin1_General_100_BIN2 NOT NULL)")
        == "CREATE TABLE s.t (company_id TEXT(64) NOT NULL)"
    )


def test_other_collations_are_refused() -> None:
    with pytest.raises(TranslationError, match="collation SQL_Latin1_General_CP1_CI_AS"):
        translate("CREATE TABLE s.t (name NVARCHAR(64) COLLATE SQL_Latin1_General_CP1_CI_AS NULL)")


def test_ids_differing_only_in_case_are_two_companies() -> None:
    engine = DuckDBWarehouse(":memory:")
    engine.apply_schema()
    engine.bulk_load(
        "stg.company_first_usage", ["company_id", "first_usage_date"], [("ACME", "2025-01-01"), ("acme", "2025-01-02")]
    )
    assert engine.run_sql("SELECT COUNT(*) AS n FROM stg.company_first_usage WHERE company_id = @c", {"c": "acme"}) == [
        {"n": 1}
    ]
