"""T-SQL → DuckDB translation: sqlglot plus a small explicit rewrite layer.

The T-SQL in ``sql/`` is the single source of truth. Each statement is parsed with
``ErrorLevel.RAISE`` (statements are split first, so a construct sqlglot cannot read never
swallows the ones after it), rewritten where DuckDB differs, and generated with
``unsupported_level=RAISE``. Anything we have no rule for raises ``TranslationError`` naming
the file and statement, rather than running something subtly different.

Rewrites (each has a golden test in tests/translation/):
- ``BIT`` → ``BOOLEAN`` (DuckDB's BIT is a bit string, not a flag).
- ``FLOAT`` → ``DOUBLE`` (T-SQL FLOAT is 8 bytes; sqlglot emits 4-byte REAL).
- ``PRIMARY KEY (a, b)``: sqlglot adds ``NULLS FIRST`` to key columns, which DuckDB rejects.
- ``DATEADD(DAY, n, d)`` → ``d + n``: stays a DATE (DuckDB's ``d + INTERVAL`` is a TIMESTAMP).
  Our T-SQL uses DATEADD(DAY, ...) on DATE values only; on a timestamp DuckDB fails loudly.
  A computed ``n`` becomes ``CAST(n AS INT)``: T-SQL takes the number as INT, while DuckDB has
  no DATE + BIGINT (and its DATEDIFF, % and SUM give BIGINT or wider).
- ``MERGE ... UPDATE SET tgt.col = ...``: DuckDB wants unqualified SET targets.
- ``COLLATE <name>_BIN2`` on a column: dropped. Ids are compared byte for byte (Azure SQL's
  default collation is case-insensitive, so the T-SQL says BIN2); DuckDB already compares
  binary. Any other collation is refused: we would not know its DuckDB meaning.
- ``CREATE INDEX``: skipped; DuckDB's zone maps serve our range filters, and ART indexes would
  only slow bulk loads and hold memory. (Primary keys are kept: they enforce the grain.)
  ``DROP INDEX`` is skipped with it: the index never existed on DuckDB.
- ``CREATE UNIQUE INDEX``: skipped only for the keys listed in ``UNIQUE_KEYS_CHECKED``, each
  kept unique by the SQL that writes the table and verified by a named data-quality check
  (on DuckDB a key index made those writes and deletes many times slower). Any other unique
  index is refused: dropping a uniqueness guarantee is never silent.
- ``EXEC sp_rename 'schema.old', 'new'`` (a table) → ``ALTER TABLE schema.old RENAME TO new``.
Refused with a clear error: reading the clock (SYSUTCDATETIME, GETDATE, CURRENT_TIMESTAMP:
the run date and load time are parameters), IF/WHILE blocks, DECLARE, IDENTITY columns,
``EXEC`` of anything but a table's ``sp_rename``,
``DELETE alias FROM ...``, recursive CTEs, temp tables (#t).
"""

from __future__ import annotations

import functools

import sqlglot
from sqlglot import ErrorLevel, exp
from sqlglot.errors import ParseError, UnsupportedError

from shared.adapters.warehouse.base import checked_table_name
from shared.adapters.warehouse.sql_files import Statement
from shared.errors import TranslationError

_CLOCK_FUNCTIONS = {"SYSUTCDATETIME", "SYSDATETIME", "GETDATE", "GETUTCDATE", "SYSDATETIMEOFFSET", "NOW"}

# Unique indexes DuckDB goes without: (table, key columns) -> the check that verifies the key
# after every build. The SQL that writes the table keeps the key by construction.
UNIQUE_KEYS_CHECKED: dict[tuple[str, tuple[str, ...]], str] = {
    # sql/stg/crm_companies__load.sql: last occurrence per company, the date replaced in one
    # transaction; verified by sql/checks/duplicate_keys.sql, key set stg_crm.
    ("stg.crm_companies", ("snapshot_date", "company_id")): "stg_crm_duplicate_keys",
}


@functools.lru_cache(maxsize=4096)
def to_duckdb(statement: Statement) -> str | None:
    """DuckDB SQL for one T-SQL statement, or None when the statement is a deliberate no-op."""
    try:
        parsed = sqlglot.parse(statement.text, read="tsql", error_level=ErrorLevel.RAISE)
    except ParseError as exc:
        raise TranslationError(statement.sql_file, statement.index, f"cannot parse T-SQL: {_first_line(exc)}") from exc
    if len(parsed) != 1 or parsed[0] is None:
        raise TranslationError(statement.sql_file, statement.index, "expected exactly one statement")
    tree = parsed[0]
    if isinstance(tree, exp.Execute):
        return _table_rename(tree, statement)
    _refuse_unsupported(tree, statement)
    if isinstance(tree, (exp.Create, exp.Drop)) and str(tree.args.get("kind", "")).upper().endswith("INDEX"):
        if isinstance(tree, exp.Create) and tree.args.get("unique"):
            _require_checked_unique_key(tree, statement)
        return None
    rewritten = tree.transform(_rewrite)
    if rewritten is None:  # _rewrite drops only column constraints, never a whole statement
        raise TranslationError(statement.sql_file, statement.index, "the statement rewrote to nothing")
    try:
        return rewritten.sql(dialect="duckdb", unsupported_level=ErrorLevel.RAISE)
    except UnsupportedError as exc:
        raise TranslationError(statement.sql_file, statement.index, f"unsupported in DuckDB: {exc}") from exc


def _rewrite(node: exp.Expression) -> exp.Expression | None:
    if isinstance(node, exp.DataType):
        if node.this == exp.DataType.Type.BIT:
            return exp.DataType.build("BOOLEAN")
        if node.this == exp.DataType.Type.FLOAT:
            return exp.DataType.build("DOUBLE")
    if isinstance(node, exp.PrimaryKey):
        node.set("expressions", [e.this if isinstance(e, exp.Ordered) else e for e in node.expressions])
    if isinstance(node, exp.DateAdd) and (node.unit is None or node.unit.name.upper() in {"DAY", "DD", "D"}):
        return exp.Add(this=node.this, expression=_as_int_day_count(node.expression))
    if isinstance(node, exp.ColumnConstraint) and isinstance(node.args.get("kind"), exp.CollateColumnConstraint):
        return None  # a binary collation (others are refused before rewriting)
    if isinstance(node, exp.Merge):
        for when in node.find_all(exp.When):
            then = when.args.get("then")
            if isinstance(then, exp.Update):
                for eq in then.expressions:
                    if isinstance(eq, exp.EQ) and isinstance(eq.this, exp.Column) and eq.this.table:
                        eq.set("this", exp.column(eq.this.name))
    return node


def _table_rename(tree: exp.Execute, statement: Statement) -> str:
    """``EXEC sp_rename 'schema.old', 'new'`` as DuckDB's ``ALTER TABLE schema.old RENAME TO new``:
    the one procedure we call (a table's rename; sp_rename's column and index forms take a third
    argument and are refused with everything else). Both names must be table names our code
    could write (``checked_table_name``), the new one in the old one's schema, as sp_rename keeps it."""
    # A non-literal argument becomes "", which is no table name.
    names = [arg.name if isinstance(arg, (exp.Literal, exp.National)) else "" for arg in tree.expressions]
    try:
        if tree.this.name.lower() != "sp_rename" or len(names) != 2:
            raise ValueError("not a table's sp_rename")
        schema, old = checked_table_name(names[0]).split(".")
        checked_table_name(f"{schema}.{names[1]}")
    except ValueError as exc:
        raise TranslationError(
            statement.sql_file,
            statement.index,
            "EXEC is supported only as sp_rename 'schema.table', 'new_name' (a table rename)",
        ) from exc
    rename = exp.Alter(
        this=exp.table_(old, db=schema),
        kind="TABLE",
        actions=[exp.AlterRename(this=exp.table_(names[1]))],
    )
    return rename.sql(dialect="duckdb", unsupported_level=ErrorLevel.RAISE)


def _require_checked_unique_key(tree: exp.Create, statement: Statement) -> None:
    """A unique index is skipped only where UNIQUE_KEYS_CHECKED names the check that verifies it."""
    index = tree.this
    table = index.args.get("table")
    params = index.args.get("params")
    columns = tuple(
        (column.this if isinstance(column, exp.Ordered) else column).name.lower()
        for column in (params.args.get("columns") or [] if params else [])
    )
    name = f"{table.db}.{table.name}".lower() if isinstance(table, exp.Table) else ""
    if (name, columns) not in UNIQUE_KEYS_CHECKED:
        raise TranslationError(
            statement.sql_file,
            statement.index,
            f"unique index on {name}({', '.join(columns)}) would lose its uniqueness on DuckDB: declare the key "
            "in CREATE TABLE, or list it in translate.UNIQUE_KEYS_CHECKED with the check that verifies it",
        )


def _as_int_day_count(count: exp.Expression) -> exp.Expression:
    """DATEADD's number as DuckDB needs it: literals (also negated) as written, anything else cast to INT."""
    literal = count.this if isinstance(count, exp.Neg) else count
    if isinstance(literal, exp.Literal) and not literal.is_string:
        return count
    return exp.cast(count, exp.DataType.Type.INT)


def _refuse_unsupported(tree: exp.Expr, statement: Statement) -> None:
    def refuse(reason: str) -> None:
        raise TranslationError(statement.sql_file, statement.index, reason)

    if isinstance(tree, exp.Declare):
        refuse("DECLARE is not supported: pass values as @parameters")
    if isinstance(tree, (exp.Command, exp.IfBlock, exp.WhileBlock)):
        refuse(f"statement kind not supported by the translation layer: {tree.sql(dialect='tsql')[:60]!r}")
    for node in tree.walk():
        if isinstance(node, (exp.CurrentTimestamp, exp.CurrentDate, exp.CurrentTime)):
            refuse("SQL must not read the clock: pass the time as a parameter")
        if isinstance(node, exp.Anonymous) and node.name.upper() in _CLOCK_FUNCTIONS:
            refuse(f"SQL must not read the clock ({node.name}): pass the time as a parameter")
        if isinstance(node, exp.CollateColumnConstraint) and not node.this.name.upper().endswith(("_BIN2", "_BIN")):
            refuse(f"collation {node.this.name} has no DuckDB equivalent: only binary (*_BIN2) collations translate")
        if isinstance(node, exp.GeneratedAsIdentityColumnConstraint):
            refuse("IDENTITY columns are not supported: generate keys in the loader")
        if isinstance(node, exp.With) and node.args.get("recursive"):
            refuse("recursive CTEs are not supported")
        if isinstance(node, exp.Table) and isinstance(node.this, exp.Identifier) and node.this.args.get("temporary"):
            refuse("temp tables (#name) are not supported: use a landing table keyed by load_id")
    if isinstance(tree, exp.Delete) and tree.args.get("tables"):
        refuse("DELETE alias FROM ... is not supported: use DELETE FROM t WHERE EXISTS (...)")


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
