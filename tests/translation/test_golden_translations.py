"""Golden T-SQL → DuckDB pairs: one per construct the rewrite layer handles or refuses."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from shared.adapters.warehouse.duckdb_engine import DuckDBWarehouse
from shared.adapters.warehouse.sql_files import merge_as_insert, split_statements
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
            "SELECT DATEADD(DAY, -(DATEDIFF(DAY, CAST('1900-01-01' AS DATE), d) % 7), d) AS monday FROM s.t",
            "SELECT d + CAST(-(DATE_DIFF('DAY', CAST(CAST('1900-01-01' AS DATE) AS TIMESTAMP), "
            "CAST(d AS TIMESTAMP)) % 7) AS INT) AS monday FROM s.t",
            id="dateadd-day-computed-count-is-int",
        ),
        pytest.param(
            "SELECT DATEPART(ISO_WEEK, d) AS w, EOMONTH(d) AS e FROM s.t",
            "SELECT CAST(STRFTIME(d, '%V') AS INT) AS w, LAST_DAY(CAST(d AS DATE)) AS e FROM s.t",
            id="iso-week-and-end-of-month",
        ),
        pytest.param(
            "CREATE OR ALTER VIEW s.v AS SELECT a FROM s.t",
            "CREATE OR REPLACE VIEW s.v AS SELECT a FROM s.t",
            id="create-or-alter-view",
        ),
        pytest.param(
            "MERGE INTO s.t AS tgt USING s.u AS src ON tgt.a = src.a "
            "WHEN MATCHED THEN UPDATE SET tgt.b = src.b "
            "WHEN NOT MATCHED BY TARGET THEN INSERT (a, b) VALUES (src.a, src.b);",
            "MERGE INTO s.t AS tgt USING s.u AS src ON tgt.a = src.a "
            "WHEN MATCHED THEN UPDATE SET b = src.b WHEN NOT MATCHED THEN INSERT (a, b) VALUES (src.a, src.b)",
            id="merge-set-targets-unqualified",
        ),
        pytest.param(
            "MERGE INTO s.t AS tgt USING s.u AS src ON tgt.a = src.a "
            "WHEN MATCHED AND src.f = 0 AND src.b = 0 THEN DELETE "
            "WHEN MATCHED THEN UPDATE SET tgt.b = CASE WHEN src.f = 1 THEN tgt.b + src.b ELSE src.b END;",
            "MERGE INTO s.t AS tgt USING s.u AS src ON tgt.a = src.a "
            "WHEN MATCHED AND src.f = 0 AND src.b = 0 THEN DELETE "
            "WHEN MATCHED THEN UPDATE SET b = CASE WHEN src.f = 1 THEN tgt.b + src.b ELSE src.b END",
            id="merge-set-value-keeps-target-qualified",
        ),
        pytest.param(
            "ALTER TABLE s.t ADD flag BIT NULL", "ALTER TABLE s.t ADD COLUMN flag BOOLEAN NULL", id="alter-add-bit"
        ),
        pytest.param(
            "SELECT TOP 5 a FROM s.t ORDER BY a", "SELECT a FROM s.t ORDER BY a NULLS FIRST LIMIT 5", id="top"
        ),
        pytest.param("SELECT ISNULL(a, 0) AS a FROM s.t", "SELECT COALESCE(a, 0) AS a FROM s.t", id="isnull"),
        pytest.param(
            "SELECT IIF(a > 0, 1, 0) AS p FROM s.t", "SELECT CASE WHEN a > 0 THEN 1 ELSE 0 END AS p FROM s.t", id="iif"
        ),
        pytest.param("CREATE INDEX ix_t_a ON s.t (a, b)", None, id="secondary-index-skipped"),
        pytest.param("DROP INDEX ix_t_a ON s.t", None, id="secondary-index-drop-skipped"),
        pytest.param("CREATE CLUSTERED INDEX ix_t_a ON s.t (a)", None, id="clustered-index-skipped"),
        pytest.param(
            "CREATE UNIQUE CLUSTERED INDEX ux_crm_companies_snapshot_company "
            "ON stg.crm_companies (snapshot_date, company_id)",
            None,
            id="unique-index-skipped-where-a-check-verifies-the-key",
        ),
        pytest.param(
            "EXEC sp_rename 'stg.crm_companies_unkeyed', 'crm_companies'",
            "ALTER TABLE stg.crm_companies_unkeyed RENAME TO crm_companies",
            id="sp-rename-table",
        ),
        pytest.param(
            "EXEC sp_rename N's.t_new', N't'", "ALTER TABLE s.t_new RENAME TO t", id="sp-rename-table-nvarchar"
        ),
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
        pytest.param("CREATE UNIQUE INDEX ux_t_a ON s.t (a)", "lose its uniqueness", id="unique-index-unchecked"),
        pytest.param(
            "CREATE UNIQUE INDEX ux ON stg.crm_companies (company_id)",
            "lose its uniqueness",
            id="unique-index-other-key",
        ),
        pytest.param("EXEC s.do_something", "EXEC is supported only as sp_rename", id="exec-procedure"),
        pytest.param("EXEC sp_rename 's.t.a', 'b', 'COLUMN'", "EXEC is supported only", id="sp-rename-column"),
        pytest.param("EXEC sp_rename 't_new', 't'", "EXEC is supported only", id="sp-rename-without-schema"),
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


MERGE_WITH_CTE = """WITH rows_in AS (
    -- computed rows
    SELECT k, v FROM s.src WHERE k >= @k_from
)
MERGE INTO s.t AS target
USING rows_in AS source
    ON target.k = source.k
WHEN MATCHED AND target.v <> source.v THEN UPDATE SET target.v = source.v, target.run_id = @run_id
WHEN NOT MATCHED BY TARGET THEN INSERT (k, v, run_id) VALUES (source.k, source.v, @run_id)"""


def test_a_merge_runs_as_the_insert_of_its_not_matched_branch_with_its_ctes_as_written() -> None:
    (statement,) = split_statements(MERGE_WITH_CTE, "golden.sql")
    derived = merge_as_insert(statement)

    assert derived.text.startswith(MERGE_WITH_CTE[: MERGE_WITH_CTE.index("MERGE")])  # the CTEs as written
    assert " ".join(derived.text[derived.text.index("INSERT") :].split()) == (
        "INSERT INTO s.t ( k, v, run_id ) SELECT source.k, source.v, @run_id FROM rows_in AS source"
    )
    assert derived.parameters == ("k_from", "run_id")
    assert to_duckdb(derived) == (
        "WITH rows_in AS (/* computed rows */ SELECT k, v FROM s.src WHERE k >= $k_from) "
        "INSERT INTO s.t (k, v, run_id) SELECT source.k, source.v, $run_id FROM rows_in AS source"
    )
    (plain,) = split_statements("DELETE FROM s.t WHERE k < @k_from", "golden.sql")
    assert merge_as_insert(plain) is plain


def test_a_merge_without_one_insert_branch_or_with_a_by_source_branch_cannot_run_as_an_insert() -> None:
    (statement,) = split_statements(
        "MERGE INTO s.t AS target USING s.src AS source ON target.k = source.k WHEN MATCHED THEN DELETE", "golden.sql"
    )
    with pytest.raises(ValueError, match="no single WHEN NOT MATCHED INSERT"):
        merge_as_insert(statement)
    (statement,) = split_statements(MERGE_WITH_CTE + " WHEN NOT MATCHED BY SOURCE THEN DELETE", "golden.sql")
    with pytest.raises(ValueError, match="BY SOURCE"):
        merge_as_insert(statement)


def test_a_merge_run_as_its_insert_writes_the_rows_the_merge_writes_into_an_empty_target() -> None:
    results = []
    for new_keys_only in (False, True):
        engine = DuckDBWarehouse(":memory:")
        engine.run_sql("CREATE SCHEMA s")
        engine.run_sql("CREATE TABLE s.src (k INT NOT NULL, v INT NOT NULL)")
        engine.run_sql("CREATE TABLE s.t (k INT NOT NULL PRIMARY KEY, v INT NOT NULL, run_id NVARCHAR(10) NOT NULL)")
        engine.run_sql("INSERT INTO s.src (k, v) VALUES (1, 10), (2, 20), (3, 30)")
        (statement,) = split_statements(MERGE_WITH_CTE, "golden.sql")
        run = merge_as_insert(statement) if new_keys_only else statement
        engine._run_statements([run], {"k_from": 2, "run_id": "r1"})
        results.append(engine.run_sql("SELECT k, v, run_id FROM s.t ORDER BY k"))
    assert results[0] == results[1] == [{"k": 2, "v": 20, "run_id": "r1"}, {"k": 3, "v": 30, "run_id": "r1"}]


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
    assert row == {"prev": dt.date(2025, 2, 28), "flag": True, "x": 0.30000000000000004, "gap": 30}


def test_a_bit_flag_set_and_compared_as_1_and_0_runs_as_a_boolean_on_duckdb() -> None:
    """T-SQL writes BIT flags as 1/0 (CASE ... THEN 1 ELSE 0 END, flag = 1); DuckDB's BOOLEAN
    takes and compares them the same way."""
    engine = DuckDBWarehouse(":memory:")
    engine.run_sql("CREATE SCHEMA s")
    engine.run_sql("CREATE TABLE s.t (n INT NOT NULL)")
    engine.run_sql("ALTER TABLE s.t ADD flag BIT NULL")
    engine.run_sql(
        "INSERT INTO s.t (n, flag) SELECT n, CASE WHEN n > 1 THEN 1 ELSE 0 END FROM (VALUES (1), (2)) AS v (n)"
    )
    rows = engine.run_sql("SELECT n, flag FROM s.t WHERE flag = 1 OR (flag = 0 AND n = 1) ORDER BY n")
    assert rows == [{"n": 1, "flag": False}, {"n": 2, "flag": True}]


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


def test_week_start_and_iso_week_agree_with_python_across_a_year_boundary() -> None:
    """The weekly view's Monday (a day count since 1900-01-01, a Monday: independent of
    DATEFIRST) and ISO week, on the days around 2025-01-01 (ISO week 2025-W01 starts 2024-12-30)."""
    engine = DuckDBWarehouse(":memory:")
    days = [dt.date(2024, 12, 27) + dt.timedelta(days=k) for k in range(12)]
    rows = [
        engine.run_sql(
            "SELECT DATEADD(DAY, -(DATEDIFF(DAY, CAST('1900-01-01' AS DATE), @d) % 7), CAST(@d AS DATE)) AS monday,"
            " DATEPART(ISO_WEEK, CAST(@d AS DATE)) AS iso_week",
            {"d": d},
        )[0]
        for d in days
    ]
    assert rows == [{"monday": d - dt.timedelta(days=d.weekday()), "iso_week": d.isocalendar().week} for d in days]


@pytest.mark.parametrize(
    ("change", "base", "expected"),
    [(1, 800, "0.13"), (-1, 800, "-0.13"), (1, 3, "33.33"), (2, 3, "66.67"), (-3, 3, "-100.00"), (5, 0, None)],
)
def test_percent_change_rounds_half_away_from_zero_as_tsql_decimal_does(
    change: int, base: int, expected: str | None
) -> None:
    """DuckDB divides DECIMALs in DOUBLE; rounding the exact integer ratio x 10000 to a whole number
    first gives T-SQL's DECIMAL result (ROUND is half away from zero on both)."""
    engine = DuckDBWarehouse(":memory:")
    (row,) = engine.run_sql(
        "SELECT CAST(ROUND(CAST(@change AS DECIMAL(19, 0)) * 10000 / NULLIF(@base, 0), 0) / 100"
        " AS DECIMAL(23, 2)) AS pct",
        {"change": change, "base": base},
    )
    assert row["pct"] == (None if expected is None else Decimal(expected))
