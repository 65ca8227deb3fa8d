"""The warehouse interface: run named T-SQL files with bound parameters, bulk load, query.

Two engines implement it: DuckDB (embedded, the local default) and Azure SQL (pyodbc).
Services take a ``Warehouse`` and never know which one they have. Engine differences live in
class-level capability flags and in the few methods a subclass overrides (the SQLMesh
engine-adapter shape), never in ``if engine == ...`` branches in services.
"""

from __future__ import annotations

import abc
import contextlib
import datetime as dt
import functools
import hashlib
import logging
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from shared import telemetry
from shared.adapters.warehouse.sql_files import (
    SQL_ROOT,
    Statement,
    load_statements,
    merge_as_insert,
    migrations,
    split_statements,
)
from shared.clock import naive_utc, utc_now
from shared.errors import BuildError, SchemaOutOfDate

log = logging.getLogger(__name__)

Row = dict[str, Any]
_TABLE = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")


_BulkLoad = TypeVar("_BulkLoad", bound=Callable[..., int])


def traced_bulk_load(method: _BulkLoad) -> _BulkLoad:
    """Wrap an engine's ``bulk_load`` in a ``sql.bulk_load`` span that records the row count."""

    @functools.wraps(method)
    def wrapper(self: Any, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
        with telemetry.span(f"sql.bulk_load {table}", attributes={"db.table": table}) as span:
            loaded = method(self, table, columns, rows)
            span.set_attribute("db.rows", loaded)
            return loaded

    return wrapper  # type: ignore[return-value]


def checked_table_name(table: str) -> str:
    """Table names come from code, never from input; this guards that promise."""
    if not _TABLE.match(table):
        raise ValueError(f"not a schema-qualified table name: {table!r}")
    return table


class Warehouse(abc.ABC):
    """A SQL warehouse that runs the T-SQL files under ``sql/``."""

    DIALECT: ClassVar[str]
    # Contained database users for Entra identities (sql/admin/); the embedded engine has none.
    SUPPORTS_DATABASE_USERS: ClassVar[bool] = False
    # For engines whose memory is capped by a setting: how many company-days one run of the build
    # SQL may compute at once (the builder cuts longer ranges into pieces), and how many one
    # transaction may write (an uncommitted write's keys stay in memory; a longer build commits in
    # parts). None: no bound, the engine spills on its own (Azure SQL).
    build_piece_company_days: int | None = None
    build_transaction_company_days: int | None = None

    def __init__(self, sql_root: Path = SQL_ROOT) -> None:
        self.sql_root = sql_root
        # One connection per engine, shared by the worker's threads: the lock serialises use,
        # _depth makes transaction() re-entrant, _owner says which thread holds a transaction.
        self._lock = threading.RLock()
        self._depth = 0
        self._owner: int | None = None

    # ---- statements --------------------------------------------------------------------
    @abc.abstractmethod
    def _execute(self, statement: Statement, params: Mapping[str, Any]) -> list[Row] | None:
        """Run one T-SQL statement; rows if it returns any, else None."""

    def run(self, name: str, params: Mapping[str, Any] | None = None, *, new_keys_only: bool = False) -> list[Row]:
        """Run every statement of ``sql/<name>.sql``; returns the rows of the last one that has rows.

        ``new_keys_only``: the caller knows that no MERGE target of the file holds any of its
        source's keys (the builder: dates with no row yet), so each MERGE runs as the INSERT of
        its WHEN NOT MATCHED branch (``merge_as_insert``), which does the same work for less.
        One span per file (``sql <name>``): each SQL step of staging, builds and checks."""
        with telemetry.span(
            f"sql {name}", attributes={"db.sql_file": name, "db.system": getattr(self, "DIALECT", "")}
        ) as span:
            statements = self._statements(name)
            if new_keys_only:
                statements = tuple(merge_as_insert(statement) for statement in statements)
            rows = self._run_statements(statements, params or {})
            span.set_attribute("db.rows_returned", len(rows))
            return rows

    def query(self, name: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        """Alias of ``run`` that reads better where a file is a SELECT."""
        return self.run(name, params)

    def run_sql(self, tsql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        """Run ad-hoc T-SQL (tests, operator tools). Values must still be @parameters."""
        return self._run_statements(split_statements(tsql, "<inline>"), params or {})

    def _run_statements(self, statements: Sequence[Statement], params: Mapping[str, Any]) -> list[Row]:
        result: list[Row] = []
        for statement in statements:
            missing = statement.parameter_names - params.keys()
            if missing:
                raise BuildError(
                    f"{statement.sql_file}: statement {statement.index} needs parameters {sorted(missing)}"
                )
            rows = self._execute(statement, {k: params[k] for k in statement.parameter_names})
            if rows is not None:
                result = rows
        return result

    def _statements(self, name: str) -> tuple[Statement, ...]:
        if self.sql_root == SQL_ROOT:
            return load_statements(name)
        path = self.sql_root / f"{name}.sql"
        return split_statements(path.read_text(encoding="utf-8"), name)

    # ---- loading and transactions ------------------------------------------------------
    @abc.abstractmethod
    def bulk_load(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
        """Append rows to ``table`` in batches, streaming; returns the number of rows.

        Empty strings are loaded as NULL on every engine (the CSV path of DuckDB cannot tell
        them apart, so the others follow for identical results).
        """

    def bulk_load_columns(self, table: str, columns: Sequence[str], batches: Iterable[Sequence[Sequence[Any]]]) -> int:
        """Append batches given by column (one equal-length sequence per name in ``columns``).

        For producers that build columns (the CRM validator): an engine with a columnar load
        overrides this; the default turns each batch into rows for ``bulk_load`` (Azure SQL:
        ``fast_executemany`` batches), so every engine has a bulk path for it. A column may be an
        Arrow array (anything with ``to_pylist``): it is turned into Python values here.
        """
        return self.bulk_load(
            table,
            columns,
            (row for batch in batches for row in zip(*map(_python_values, batch), strict=True)),
        )

    def write_out_log(self, over_bytes: int) -> bool:
        """Engines that keep committed rows in a write-ahead log until a checkpoint writes them
        into the database file (DuckDB) do that now, if the log holds more than ``over_bytes``
        and no transaction is open; returns whether they did. Azure SQL manages its own log."""
        return False

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """A transaction; re-entrant (an inner block joins the outer one)."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            self._begin_transaction()
            self._depth, self._owner = 1, threading.get_ident()
            try:
                yield
            except BaseException as exc:
                self._rollback_transaction(exc)
                raise
            else:
                self._commit_transaction()
            finally:
                self._depth, self._owner = 0, None

    @abc.abstractmethod
    def _begin_transaction(self) -> None: ...

    @abc.abstractmethod
    def _commit_transaction(self) -> None: ...

    @abc.abstractmethod
    def _rollback_transaction(self, error: BaseException) -> None: ...

    def close(self) -> None:  # noqa: B027 - optional for engines without resources
        """Release connections."""

    # ---- schema ------------------------------------------------------------------------
    def table_exists(self, schema: str, table: str) -> bool:
        rows = self.run_sql(
            "SELECT COUNT(*) AS n FROM INFORMATION_SCHEMA.TABLES WHERE TABLE_SCHEMA = @schema AND TABLE_NAME = @table",
            {"schema": schema, "table": table},
        )
        return bool(rows and rows[0]["n"])

    def apply_schema(self, now: dt.datetime | None = None) -> list[int]:
        """Apply the migrations under sql/schema not yet applied; returns their versions.

        Each migration runs in its own transaction together with its bookkeeping row, so a
        failure leaves the warehouse at the previous version. A changed, already-applied
        migration is an error: migrations are append-only.
        """
        now = naive_utc(now or utc_now())
        applied = self._applied_migrations()
        done: list[int] = []
        for version, name in migrations(self.sql_root):
            checksum = hashlib.sha256((self.sql_root / f"{name}.sql").read_bytes()).hexdigest()
            if version in applied:
                if applied[version] != checksum:
                    raise BuildError(f"migration {name} changed after it was applied; add a new migration instead")
                continue
            with self.transaction():
                self.run(name)
                if version == 1 or not self.table_exists("ops", "schema_migrations"):
                    self.run_sql(_MIGRATIONS_TABLE)
                self.run_sql(
                    "INSERT INTO ops.schema_migrations (version, name, checksum, applied_at) "
                    "VALUES (@version, @name, @checksum, @applied_at)",
                    {"version": version, "name": name, "checksum": checksum, "applied_at": now},
                )
            log.info("applied migration %s", name)
            done.append(version)
        return done

    def require_current_schema(self) -> None:
        """Refuse to run against a warehouse that lacks (or has edited) migrations of this code.

        The runtime check the Functions app makes once per process instead of applying DDL: the
        app's identity needs no DDL rights, and one clear error beats a missing column mid-build.
        """
        applied = self._applied_migrations()
        missing = []
        for version, name in migrations(self.sql_root):
            checksum = hashlib.sha256((self.sql_root / f"{name}.sql").read_bytes()).hexdigest()
            if applied.get(version) != checksum:
                missing.append(name)
        if missing:
            raise SchemaOutOfDate(
                f"the warehouse schema is behind this code: {len(missing)} migration(s) not applied, first "
                f"{missing[0]}; apply them as a deploy step with `python -m pipeline_tools.cli schema apply` "
                "(azd runs it after provisioning)"
            )

    def pending_migrations(self) -> list[tuple[int, str]]:
        """The migrations ``apply_schema`` would apply now, in order (read only)."""
        applied = self._applied_migrations()
        return [(version, name) for version, name in migrations(self.sql_root) if version not in applied]

    def _applied_migrations(self) -> dict[int, str]:
        if not self.table_exists("ops", "schema_migrations"):
            return {}
        rows = self.run_sql("SELECT version, checksum FROM ops.schema_migrations")
        return {int(r["version"]): r["checksum"] for r in rows}


_MIGRATIONS_TABLE = """
CREATE TABLE ops.schema_migrations (
    version INT NOT NULL PRIMARY KEY,
    name NVARCHAR(200) NOT NULL,
    checksum NVARCHAR(64) NOT NULL,
    applied_at DATETIME2(6) NOT NULL
)
"""


def _python_values(values: Sequence[Any]) -> Sequence[Any]:
    """A column's values as Python objects (an Arrow array's ``to_pylist``, else as given)."""
    to_pylist = getattr(values, "to_pylist", None)
    return to_pylist() if to_pylist is not None else values
