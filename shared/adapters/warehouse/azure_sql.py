"""Azure SQL warehouse engine: the T-SQL files under ``sql/`` run as written, through pyodbc.

How the interface maps onto Azure SQL:

- **Driver.** Microsoft ODBC Driver 18 for SQL Server via pyodbc. ``AZURE_SQL_CONNECTION_STRING``
  is an ODBC string, e.g. ``Driver={ODBC Driver 18 for SQL Server};Server=tcp:<server>.database.
  windows.net,1433;Database=<db>;Encrypt=yes;TrustServerCertificate=no;LoginTimeout=30``.
  ``pyodbc`` is imported only inside functions: importing this module (or the package) must work
  on a machine without unixODBC's ``libodbc.so.2``, where only the DuckDB engine is used.
- **Auth** (``AZURE_SQL_AUTH``). ``sql_password``: ``UID``/``PWD`` are in the connection string
  (in Azure, a Key Vault reference). ``managed_identity``: the string carries no credentials; each
  new connection gets an Entra ID token for ``https://database.windows.net/.default`` from
  ``DefaultAzureCredential`` (which caches and refreshes it) and hands it to the driver as the
  pre-connect attribute ``SQL_COPT_SS_ACCESS_TOKEN`` (1256).
- **Statements.** Each statement of a file is sent as its own batch, with ``@name`` parameters
  turned into positional ``?`` markers (``sql_files.to_positional``) and values bound in marker
  order; so T-SQL that must start a batch (CREATE VIEW / SCHEMA) works as written.
- **Transactions.** The connection never autocommits. ``transaction()`` is one database
  transaction (re-entrant: inner blocks join it); outside one, every ``run()`` is its own
  transaction that commits at the end, so a multi-statement file is all-or-nothing and a retry
  never replays half of it. ``bulk_load`` outside a transaction commits per batch (like DuckDB).
- **Retries.** Transient failures (connection drops, login/connection timeouts, deadlocks,
  throttling, failovers) are recognised by SQLSTATE and SQL Server native error number, never by
  message text (``is_transient``). Outside a transaction the unit (a ``run()``, one bulk batch) is
  retried with exponential backoff and jitter up to ``AZURE_SQL_MAX_ATTEMPTS`` times, on a fresh
  connection; inside a transaction nothing is retried: the error rises as
  ``WarehouseTransientError`` and the caller retries its whole unit of work. Anything else is a
  ``BuildError``. Messages are redacted (``shared.logs.redact``): no connection string or password.
- **Threads.** pyodbc connections must not be shared between threads while in use, so one
  connection per engine is guarded by a lock held for a unit of work (as in the DuckDB engine).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import logging
import re
import struct
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import islice, pairwise
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter
from tenacity.wait import wait_base

from shared.adapters.warehouse.base import Row, Warehouse, checked_table_name, traced_bulk_load
from shared.adapters.warehouse.sql_files import SQL_ROOT, Statement, to_positional
from shared.clock import naive_utc
from shared.errors import AuthenticationFailed, BuildError, ConfigurationError, WarehouseTransientError
from shared.logs import redact
from shared.settings import AzureSqlAuth, Settings

log = logging.getLogger(__name__)

T = TypeVar("T")
Connection = Any  # a pyodbc.Connection (typed loosely: pyodbc is imported lazily)
ConnectionFactory = Callable[[], Connection]

SQL_COPT_SS_ACCESS_TOKEN = 1256  # msodbcsql.h: pre-connect attribute carrying an Entra ID access token
AZURE_SQL_TOKEN_SCOPE = "https://database.windows.net/.default"  # noqa: S105 - a public scope name

# SQLSTATEs that mean "try again": connection failures (08xxx), timeouts (HYT00 login/query
# timeout, HYT01 connection timeout) and serialization failure / deadlock victim (40001).
TRANSIENT_SQLSTATES = frozenset({"08S01", "08001", "08003", "08004", "08007", "HYT00", "HYT01", "40001"})
# SQL Server / Azure SQL native errors Microsoft documents as transient: deadlock victim (1205),
# database unavailable / failover / reconfiguration (4060, 40197, 40613, 42108, 42109),
# throttling and resource limits (40501, 10928, 10929, 49918-49920, 4221, 40143, 40540) and
# transport-level connection drops (10053, 10054, 10060, 233, 64).
TRANSIENT_NATIVE_ERRORS = frozenset(
    {
        1205,
        4060,
        4221,
        40143,
        40197,
        40501,
        40540,
        40613,
        42108,
        42109,
        49918,
        49919,
        49920,
        10928,
        10929,
        10053,
        10054,
        10060,
        233,
        64,
    }
)

_SQLSTATE = re.compile(r"^[0-9A-Z]{5}$")
# pyodbc formats every ODBC diagnostic record as "[SQLSTATE] <driver text> (<native>)", the first
# one followed by " (<ODBC function>)", records joined by "; " (pyodbc src/errors.cpp). It exposes
# the native error number nowhere else, so we read it from that fixed position: structure, not
# wording.
_DIAG_RECORD_START = re.compile(r"(?:^|; )\[[0-9A-Z]{5}\] ")
_NATIVE_AT_END = re.compile(r"\((-?\d+)\)(?: \([A-Za-z]\w*\))?\s*$")
_CREDENTIAL_KEYS = re.compile(r"(?i)(?:^|;)\s*(UID|PWD|User ID|Password|Authentication)\s*=")
_COLUMN = re.compile(r"^[a-z][a-z0-9_]*$")


# ---- pure helpers (each tested alone) ------------------------------------------------------
def is_transient(sqlstate: str | None, native_errors: Iterable[int]) -> bool:
    """Whether a driver error is worth retrying, decided by SQLSTATE and native error number only."""
    return sqlstate in TRANSIENT_SQLSTATES or any(code in TRANSIENT_NATIVE_ERRORS for code in native_errors)


def native_error_numbers(message: str) -> tuple[int, ...]:
    """The native error number of each diagnostic record in a pyodbc error message."""
    starts = [m.start() for m in _DIAG_RECORD_START.finditer(message)]
    numbers = []
    for begin, end in pairwise([*starts, len(message)]):
        found = _NATIVE_AT_END.search(message[begin:end])
        if found:
            numbers.append(int(found.group(1)))
    return tuple(numbers)


def diagnostics(exc: BaseException) -> tuple[str | None, tuple[int, ...]]:
    """(SQLSTATE, native error numbers) of a pyodbc error; pyodbc's args are (sqlstate, message)."""
    args = exc.args
    sqlstate = args[0] if len(args) >= 2 and isinstance(args[0], str) and _SQLSTATE.match(args[0]) else None
    message = args[-1] if args and isinstance(args[-1], str) else ""
    return sqlstate, native_error_numbers(message)


def access_token_attribute(token: str) -> dict[int, bytes]:
    """``attrs_before`` for pyodbc: the token as the driver wants it (ACCESSTOKEN struct).

    msodbcsql expects a little-endian 4-byte length followed by the token in UTF-16-LE.
    """
    encoded = token.encode("utf-16-le")
    return {SQL_COPT_SS_ACCESS_TOKEN: struct.pack(f"<I{len(encoded)}s", len(encoded), encoded)}


def bind_value(value: Any) -> Any:
    """A Python value as pyodbc should bind it: aware datetimes become naive UTC (DATETIME2)."""
    return naive_utc(value) if isinstance(value, dt.datetime) else value


def bulk_value(value: Any) -> Any:
    """Like bind_value, and an empty string loads as NULL, as on DuckDB (see Warehouse.bulk_load)."""
    return None if value == "" else bind_value(value)


def _import_pyodbc() -> Any:
    try:
        import pyodbc
    except ImportError as exc:
        raise ConfigurationError(
            "WAREHOUSE_ENGINE=azure_sql needs pyodbc and unixODBC (libodbc.so.2) with ODBC Driver 18 "
            f"for SQL Server installed: {exc}"
        ) from exc
    return pyodbc


# ---- connecting ----------------------------------------------------------------------------
def connection_factory(settings: Settings, credential_factory: Callable[[], Any] | None = None) -> ConnectionFactory:
    """A function opening a new connection as the settings say (connection string, auth mode)."""
    if settings.azure_sql_connection_string is None:
        raise ConfigurationError("setting AZURE_SQL_CONNECTION_STRING must be set when WAREHOUSE_ENGINE=azure_sql")
    connection_string = settings.azure_sql_connection_string.get_secret_value()
    login_timeout_s = settings.azure_sql_login_timeout_s
    token_source: Callable[[], str] | None = None
    if settings.azure_sql_auth == AzureSqlAuth.MANAGED_IDENTITY:
        if _CREDENTIAL_KEYS.search(connection_string):
            raise ConfigurationError(
                "setting AZURE_SQL_CONNECTION_STRING must not carry UID, PWD or Authentication "
                "when AZURE_SQL_AUTH=managed_identity (the access token is the credential)"
            )
        token_source = _TokenSource(credential_factory or _default_credential)

    def connect() -> Connection:
        pyodbc = _import_pyodbc()
        # The driver ignores LoginTimeout in the string; pyodbc's timeout= sets SQL_ATTR_LOGIN_TIMEOUT.
        options: dict[str, Any] = {"autocommit": False, "timeout": login_timeout_s}
        if token_source is not None:
            options["attrs_before"] = access_token_attribute(token_source())
        return pyodbc.connect(connection_string, **options)

    return connect


def _default_credential() -> Any:
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


class _TokenSource:
    """Fresh-enough Entra ID tokens for Azure SQL; the credential is built once and caches tokens."""

    def __init__(self, credential_factory: Callable[[], Any]) -> None:
        self._credential_factory = credential_factory
        self._credential: Any = None

    def __call__(self) -> str:
        from azure.core.exceptions import ClientAuthenticationError

        if self._credential is None:
            self._credential = self._credential_factory()
        try:
            return str(self._credential.get_token(AZURE_SQL_TOKEN_SCOPE).token)
        except ClientAuthenticationError as exc:
            raise AuthenticationFailed(
                f"no Azure SQL access token from DefaultAzureCredential (AZURE_SQL_AUTH=managed_identity): "
                f"{type(exc).__name__}"
            ) from exc


# ---- the engine ----------------------------------------------------------------------------
class AzureSqlWarehouse(Warehouse):
    """Azure SQL (or SQL Server) through pyodbc; see the module docstring for the mapping."""

    DIALECT: ClassVar[str] = "tsql"
    SUPPORTS_DATABASE_USERS: ClassVar[bool] = True

    def __init__(
        self,
        connect: ConnectionFactory,
        *,
        max_attempts: int = 4,
        batch_size: int = 5000,
        wait: wait_base | None = None,
        driver_error: type[BaseException] | None = None,
        sql_root: Path = SQL_ROOT,
    ) -> None:
        """``connect`` opens a connection; ``wait`` is the backoff between attempts (tests pass a
        tiny one); ``driver_error`` is the DB-API Error class to classify (default pyodbc.Error)."""
        super().__init__(sql_root)
        self._connect = connect
        self.max_attempts = max_attempts
        self.batch_size = batch_size
        self._wait = wait or wait_exponential_jitter(multiplier=0.5, max=30, jitter=1)
        self._driver_error = driver_error
        self._conn: Connection | None = None

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> AzureSqlWarehouse:
        return cls(
            connection_factory(settings),
            max_attempts=settings.azure_sql_max_attempts,
            batch_size=settings.azure_sql_batch_size,
            **kwargs,
        )

    # ---- statements --------------------------------------------------------------------
    def _run_statements(self, statements: Sequence[Statement], params: Mapping[str, Any]) -> list[Row]:
        return self._unit_of_work(lambda: super(AzureSqlWarehouse, self)._run_statements(statements, params))

    def _execute(self, statement: Statement, params: Mapping[str, Any]) -> list[Row] | None:
        sql, names = to_positional(statement)
        values = [bind_value(params[name]) for name in names]
        where = f"{statement.sql_file}: statement {statement.index}"
        with self._driver_errors(where):
            cursor = self._connection().cursor()
            try:
                if values:
                    cursor.execute(sql, values)
                else:
                    cursor.execute(sql)
                if cursor.description is None:
                    return None
                columns = [d[0] for d in cursor.description]
                return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
            finally:
                _close_quietly(cursor)

    # ---- loading -----------------------------------------------------------------------
    @traced_bulk_load
    def bulk_load(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
        """Parameterised INSERT with ``fast_executemany`` (one round trip per batch), streaming.

        Batches of ``batch_size`` rows are read from ``rows`` one at a time, so memory stays flat.
        Outside a transaction each batch commits and is retried on its own; inside one, the
        caller's transaction decides (all-or-nothing, retried by the caller).
        """
        table = checked_table_name(table)
        for column in columns:
            if not _COLUMN.match(column):
                raise ValueError(f"not a column name: {column!r}")
        markers = ", ".join("?" for _ in columns)
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({markers})"
        total = 0
        for batch in _batches(rows, self.batch_size):
            self._unit_of_work(functools.partial(self._insert_batch, table, sql, batch))
            total += len(batch)
        return total

    def _insert_batch(self, table: str, sql: str, batch: list[list[Any]]) -> None:
        with self._driver_errors(f"bulk load into {table}"):
            cursor = self._connection().cursor()
            try:
                cursor.fast_executemany = True
                cursor.executemany(sql, batch)
            finally:
                _close_quietly(cursor)

    # ---- transactions and connections --------------------------------------------------
    def _begin_transaction(self) -> None:
        self._connection()  # the connection never autocommits: a transaction is always open

    def _commit_transaction(self) -> None:
        self._commit()

    def _rollback_transaction(self, error: BaseException) -> None:
        # After a transient error the connection may be dead: discard it rather than reuse it.
        self._rollback(discard=isinstance(error, WarehouseTransientError))

    def close(self) -> None:
        with self._lock:
            self._discard_connection()

    def _unit_of_work(self, work: Callable[[], T]) -> T:
        """Join the caller's transaction as is; otherwise run ``work`` as a retried transaction."""
        if self._owner == threading.get_ident():
            return work()
        retrying = Retrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=self._wait,
            retry=retry_if_exception_type(WarehouseTransientError),
            before_sleep=self._log_retry,
            reraise=True,
        )
        return retrying(self._in_transaction, work)

    def _in_transaction(self, work: Callable[[], T]) -> T:
        with self.transaction():
            return work()

    def _log_retry(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "Azure SQL transient error (attempt %d of %d), retrying in %.2fs: %s",
            state.attempt_number,
            self.max_attempts,
            wait,
            error,
        )

    def _connection(self) -> Connection:
        if self._conn is None:
            with self._driver_errors("connecting to Azure SQL (setting AZURE_SQL_CONNECTION_STRING)"):
                self._conn = self._connect()
        return self._conn

    def _commit(self) -> None:
        try:
            with self._driver_errors("commit"):
                self._connection().commit()
        except WarehouseTransientError:
            self._discard_connection()
            raise

    def _rollback(self, discard: bool) -> None:
        """Roll back after a failure; a connection that cannot roll back (or dropped) is replaced."""
        if self._conn is not None:
            try:
                self._conn.rollback()
            except self._driver_error_class():
                discard = True
        if discard:
            self._discard_connection()

    def _discard_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _driver_error_class(self) -> type[BaseException]:
        if self._driver_error is None:
            self._driver_error = _import_pyodbc().Error
        return self._driver_error

    @contextlib.contextmanager
    def _driver_errors(self, where: str) -> Iterator[None]:
        """Turn a driver error into the pipeline's tree: transient or BuildError, redacted."""
        try:
            yield
        except self._driver_error_class() as exc:
            raise _pipeline_error(where, exc) from exc


def _pipeline_error(where: str, exc: BaseException) -> WarehouseTransientError | BuildError:
    sqlstate, natives = diagnostics(exc)
    message = exc.args[-1] if exc.args and isinstance(exc.args[-1], str) else type(exc).__name__
    text = redact(f"{where} failed: {message}")
    if is_transient(sqlstate, natives):
        return WarehouseTransientError(text)
    return BuildError(text)


def _close_quietly(cursor: Any) -> None:
    """Closing a cursor on a dropped connection fails too; that must not mask the real error."""
    with contextlib.suppress(Exception):
        cursor.close()


def _batches(rows: Iterable[Sequence[Any]], size: int) -> Iterator[list[list[Any]]]:
    iterator = iter(rows)
    while batch := [[bulk_value(v) for v in row] for row in islice(iterator, size)]:
        yield batch
