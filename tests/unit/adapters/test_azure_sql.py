"""The Azure SQL engine: positional parameters, error classification, retries, transactions,
bulk loads, managed-identity tokens and redaction. A fake DB-API connection stands in for a
server; one test drives Microsoft's real ODBC Driver 18 against a closed loopback port.
"""

from __future__ import annotations

import ctypes
import datetime as dt
import glob
import importlib
import importlib.util
import platform
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tenacity import wait_none

from shared.adapters.warehouse import azure_sql
from shared.adapters.warehouse.azure_sql import (
    SQL_COPT_SS_ACCESS_TOKEN,
    AzureSqlWarehouse,
    access_token_attribute,
    connection_factory,
    diagnostics,
    is_transient,
    native_error_numbers,
)
from shared.adapters.warehouse.sql_files import split_statements, to_positional
from shared.errors import BuildError, ConfigurationError, WarehouseTransientError
from shared.settings import Settings

PASSWORD = "Sup3r-S3cret-pw!"
CONNECTION_STRING = (
    "Driver={ODBC Driver 18 for SQL Server};Server=tcp:example.database.windows.net,1433;"
    f"Database=pipeline;UID=pipeline;PWD={PASSWORD};Encrypt=yes"
)


def odbc_message(sqlstate: str, text: str, native: int, function: str = "SQLExecDirectW") -> str:
    """An error message exactly as pyodbc formats the first ODBC diagnostic record."""
    return f"[{sqlstate}] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]{text} ({native}) ({function})"


class FakeDriverError(Exception):
    """Stands in for pyodbc.Error: args are (sqlstate, message)."""

    @classmethod
    def of(cls, sqlstate: str, native: int, text: str = "failed") -> FakeDriverError:
        return cls(sqlstate, odbc_message(sqlstate, text, native))


DEADLOCK = ("40001", 1205)
SYNTAX_ERROR = ("42000", 102)


class FakeCursor:
    def __init__(self, conn: FakeConnection) -> None:
        self.conn = conn
        self.description: list[tuple[str]] | None = None
        self.fast_executemany = False
        self._rows: list[tuple[Any, ...]] = []

    def execute(self, sql: str, params: list[Any] | None = None) -> None:
        self.conn.raise_scripted_failure()
        self.conn.executed.append((sql, params))
        if sql.lstrip().upper().startswith("SELECT"):
            self.description = [("n",), ("label",)]
            self._rows = [(1, "one"), (2, "two")]

    def executemany(self, sql: str, rows: list[list[Any]]) -> None:
        self.conn.raise_scripted_failure()
        self.conn.batches.append((sql, self.fast_executemany, [list(r) for r in rows]))

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self._rows

    def close(self) -> None:
        pass


class FakeConnection:
    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.executed: list[tuple[str, list[Any] | None]] = []
        self.batches: list[tuple[str, bool, list[list[Any]]]] = []
        self.commits = 0
        self.rollbacks = 0
        self.closed = False

    def raise_scripted_failure(self) -> None:
        failure = self.server.failures.pop(0) if self.server.failures else None
        if failure is not None:
            raise failure

    def cursor(self) -> FakeCursor:
        return FakeCursor(self)

    def commit(self) -> None:
        self.commits += 1

    def rollback(self) -> None:
        self.rollbacks += 1

    def close(self) -> None:
        self.closed = True


class FakeServer:
    """Hands out connections and fails the next statements as scripted."""

    def __init__(self) -> None:
        self.connections: list[FakeConnection] = []
        # The next statements' outcomes, in order: an error to raise, or None to succeed.
        self.failures: list[BaseException | None] = []

    def connect(self) -> FakeConnection:
        conn = FakeConnection(self)
        self.connections.append(conn)
        return conn

    @property
    def executed(self) -> list[tuple[str, list[Any] | None]]:
        return [e for c in self.connections for e in c.executed]

    @property
    def commits(self) -> int:
        return sum(c.commits for c in self.connections)


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


@pytest.fixture
def engine(server: FakeServer) -> AzureSqlWarehouse:
    return AzureSqlWarehouse(
        server.connect, max_attempts=3, batch_size=2, wait=wait_none(), driver_error=FakeDriverError
    )


# ---- @name → ? --------------------------------------------------------------------------------
def _positional(sql: str) -> tuple[str, tuple[str, ...]]:
    return to_positional(split_statements(sql)[0])


def test_repeated_parameter_gets_a_marker_each_time_in_order() -> None:
    sql, names = _positional("SELECT @a AS x, @b AS y WHERE z BETWEEN @a AND DATEADD(DAY, 6, @a)")
    assert sql == "SELECT ? AS x, ? AS y WHERE z BETWEEN ? AND DATEADD(DAY, 6, ?)"
    assert names == ("a", "b", "a", "a")


def test_at_names_inside_strings_comments_and_brackets_stay_as_written() -> None:
    sql, names = _positional(
        "SELECT '@x is not @y' AS s, [@w] AS w /* @z */, @real AS r -- @later\nFROM t WHERE n = N'@q'"
    )
    assert sql == "SELECT '@x is not @y' AS s, [@w] AS w /* @z */, ? AS r -- @later\nFROM t WHERE n = N'@q'"
    assert names == ("real",)


def test_system_functions_with_double_at_are_not_parameters() -> None:
    sql, names = _positional("SELECT @@ROWCOUNT AS n, @run_id AS r")
    assert sql == "SELECT @@ROWCOUNT AS n, ? AS r"
    assert names == ("run_id",)


def test_statement_without_parameters_is_unchanged() -> None:
    assert _positional("SELECT 1 AS one") == ("SELECT 1 AS one", ())


# ---- classification ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("sqlstate", "natives", "transient"),
    [
        ("08S01", (), True),  # communication link failure
        ("08001", (), True),  # unable to connect
        ("08004", (), True),  # server rejected the connection
        ("HYT00", (0,), True),  # login or query timeout
        ("HYT01", (), True),  # connection timeout
        ("40001", (1205,), True),  # deadlock victim
        ("42000", (1205,), True),  # deadlock reported under another state
        ("HY000", (40613,), True),  # database not currently available (failover)
        ("HY000", (40197,), True),  # service error processing the request
        ("HY000", (40501,), True),  # service busy
        ("HY000", (49918,), True),
        ("HY000", (49919,), True),
        ("HY000", (49920,), True),
        ("42000", (4060,), True),  # cannot open database (during failover)
        ("HY000", (4221,), True),
        ("HY000", (10928,), True),  # resource limit reached
        ("HY000", (10929,), True),
        ("08S01", (10053,), True),
        ("HY000", (10054,), True),  # connection reset
        ("HY000", (10060,), True),
        ("HY000", (233,), True),
        ("HY000", (64,), True),
        ("42000", (102,), False),  # syntax error
        ("42S02", (208,), False),  # invalid object name
        ("23000", (2627,), False),  # primary key violation
        ("28000", (18456,), False),  # login failed: wrong password is not worth retrying
        ("22003", (8115,), False),  # arithmetic overflow
        (None, (), False),
    ],
)
def test_transient_classification_by_sqlstate_and_native_error(
    sqlstate: str | None, natives: tuple[int, ...], transient: bool
) -> None:
    assert is_transient(sqlstate, natives) is transient


def test_message_wording_never_makes_an_error_transient() -> None:
    exc = FakeDriverError("42000", odbc_message("42000", "deadlock timeout connection reset (1205)", 102))
    assert diagnostics(exc) == ("42000", (102,))
    assert not is_transient(*diagnostics(exc))


def test_native_error_numbers_are_read_from_every_diagnostic_record() -> None:
    message = odbc_message("40001", "Transaction (Process ID 51) was deadlocked", 1205) + (
        "; [01000] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]The statement has been terminated. (3621)"
    )
    assert native_error_numbers(message) == (1205, 3621)


def test_diagnostics_of_an_error_without_odbc_shape_is_empty() -> None:
    assert diagnostics(FakeDriverError("Attempt to use a closed connection.")) == (None, ())


# ---- managed identity --------------------------------------------------------------------------
def test_access_token_is_packed_as_length_prefixed_utf16le() -> None:
    token = "eyJ0eXAi.payload.sig"
    packed = access_token_attribute(token)[SQL_COPT_SS_ACCESS_TOKEN]
    (length,) = struct.unpack_from("<I", packed)
    assert length == len(token) * 2 == len(packed) - 4
    assert packed[4:].decode("utf-16-le") == token
    assert SQL_COPT_SS_ACCESS_TOKEN == 1256


class FakeCredential:
    def __init__(self) -> None:
        self.scopes: list[str] = []

    def get_token(self, scope: str) -> Any:
        self.scopes.append(scope)
        return type("AccessToken", (), {"token": "tok-123", "expires_on": 0})()


def test_managed_identity_connects_with_a_fresh_token_and_no_password(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, dict[str, Any]]] = []
    fake_pyodbc = type("FakePyodbc", (), {"connect": staticmethod(lambda cs, **kw: calls.append((cs, kw)))})
    monkeypatch.setattr(azure_sql, "_import_pyodbc", lambda: fake_pyodbc)
    credential = FakeCredential()
    settings = Settings(
        azure_sql_connection_string="Driver={ODBC Driver 18 for SQL Server};Server=tcp:x,1433;Database=db",
        azure_sql_auth="managed_identity",
    )
    connect = connection_factory(settings, credential_factory=lambda: credential)
    connect()
    connect()
    assert credential.scopes == ["https://database.windows.net/.default"] * 2
    _, kwargs = calls[0]
    assert kwargs["autocommit"] is False
    assert kwargs["timeout"] == settings.azure_sql_login_timeout_s
    assert kwargs["attrs_before"] == access_token_attribute("tok-123")


def test_managed_identity_refuses_a_connection_string_with_credentials() -> None:
    settings = Settings(azure_sql_connection_string=CONNECTION_STRING, azure_sql_auth="managed_identity")
    with pytest.raises(ConfigurationError, match="AZURE_SQL_CONNECTION_STRING") as info:
        connection_factory(settings)
    assert PASSWORD not in str(info.value)


def test_missing_connection_string_names_the_setting() -> None:
    with pytest.raises(ConfigurationError, match="AZURE_SQL_CONNECTION_STRING"):
        AzureSqlWarehouse.from_settings(Settings(warehouse_engine="azure_sql"))


# ---- redaction ---------------------------------------------------------------------------------
def test_driver_error_messages_never_carry_the_password(server: FakeServer) -> None:
    Settings(azure_sql_connection_string=CONNECTION_STRING)  # registers the secret, as at start-up
    leaky = FakeDriverError("28000", odbc_message("28000", f"bad login using {CONNECTION_STRING}", 18456))

    def connect() -> FakeConnection:
        raise leaky

    engine = AzureSqlWarehouse(connect, max_attempts=1, wait=wait_none(), driver_error=FakeDriverError)
    with pytest.raises(BuildError) as info:
        engine.run_sql("SELECT 1 AS n")
    assert PASSWORD not in str(info.value)
    assert "UID=pipeline" not in str(info.value)
    assert "18456" in str(info.value)


def test_password_pattern_is_masked_even_when_not_registered(server: FakeServer) -> None:
    server.failures.append(FakeDriverError("42000", odbc_message("42000", "near PWD=unregistered-pw9", 102)))
    engine = AzureSqlWarehouse(server.connect, max_attempts=1, wait=wait_none(), driver_error=FakeDriverError)
    with pytest.raises(BuildError) as info:
        engine.run_sql("SELECT 1 AS n")
    assert "unregistered-pw9" not in str(info.value)


# ---- statements, transactions and retries ------------------------------------------------------
def test_run_binds_parameters_positionally_and_returns_rows_as_dicts(
    engine: AzureSqlWarehouse, server: FakeServer
) -> None:
    day = dt.date(2025, 11, 30)
    rows = engine.run_sql(
        "SELECT n, label FROM t WHERE d BETWEEN DATEADD(DAY, -6, @d) AND @d AND r = @r",
        {
            "d": day,
            "r": "run-1",
        },
    )
    assert rows == [{"n": 1, "label": "one"}, {"n": 2, "label": "two"}]
    assert server.executed == [
        ("SELECT n, label FROM t WHERE d BETWEEN DATEADD(DAY, -6, ?) AND ? AND r = ?", [day, day, "run-1"])
    ]


def test_aware_timestamps_are_bound_as_naive_utc(engine: AzureSqlWarehouse, server: FakeServer) -> None:
    at = dt.datetime(2025, 11, 30, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    engine.run_sql("INSERT INTO t (at) VALUES (@at)", {"at": at})
    assert server.executed[0][1] == [dt.datetime(2025, 11, 30, 10, 0)]


def test_run_outside_a_transaction_commits_once_after_all_statements(
    engine: AzureSqlWarehouse, server: FakeServer
) -> None:
    engine.run_sql("DELETE FROM t WHERE d = @d; INSERT INTO t (d) VALUES (@d)", {"d": 1})
    assert len(server.executed) == 2
    assert server.commits == 1


def test_migration_0016_reaches_azure_sql_as_written_in_one_unit(engine: AzureSqlWarehouse, server: FakeServer) -> None:
    """The unkeyed stg.crm_companies keeps its grain on Azure SQL by a unique clustered index:
    the T-SQL (sp_rename included, which DuckDB gets as ALTER TABLE RENAME) goes to the server
    unchanged, statement by statement, and commits once."""
    engine.run("schema/0016_crm_companies_unique_index")
    sent = [sql for sql, _ in server.executed]
    assert sent[0].startswith("CREATE TABLE stg.crm_companies_unkeyed (")
    assert "PRIMARY KEY" not in sent[0]
    assert sent[1].startswith("INSERT INTO stg.crm_companies_unkeyed (")
    assert sent[2:] == [
        "DROP TABLE stg.crm_companies",
        "EXEC sp_rename 'stg.crm_companies_unkeyed', 'crm_companies'",
        "CREATE UNIQUE CLUSTERED INDEX ux_crm_companies_snapshot_company\n"
        "ON stg.crm_companies (snapshot_date, company_id)",
    ]
    assert server.commits == 1


def test_transient_error_is_retried_on_a_new_connection(engine: AzureSqlWarehouse, server: FakeServer) -> None:
    server.failures.append(FakeDriverError.of("08S01", 10054, "connection reset"))
    assert engine.run_sql("SELECT n FROM t") == [{"n": 1, "label": "one"}, {"n": 2, "label": "two"}]
    assert len(server.connections) == 2
    assert server.connections[0].closed
    assert server.commits == 1


def test_deadlock_retries_the_whole_file_not_the_failed_statement(
    engine: AzureSqlWarehouse, server: FakeServer
) -> None:
    server.failures.extend([None, FakeDriverError.of(*DEADLOCK)])  # the second statement is the victim
    engine.run_sql("DELETE FROM t WHERE d = @d; INSERT INTO t (d) VALUES (@d)", {"d": 1})
    first, second = server.connections
    assert first.rollbacks == 1 and first.commits == 0
    assert [sql for sql, _ in second.executed] == ["DELETE FROM t WHERE d = ?", "INSERT INTO t (d) VALUES (?)"]
    assert second.commits == 1


def test_transient_error_surfaces_after_exactly_max_attempts(engine: AzureSqlWarehouse, server: FakeServer) -> None:
    server.failures.extend(FakeDriverError.of(*DEADLOCK) for _ in range(5))
    with pytest.raises(WarehouseTransientError):
        engine.run_sql("SELECT n FROM t")
    assert len(server.connections) == 3
    assert len(server.failures) == 2


def test_non_transient_error_fails_at_once_as_build_error(engine: AzureSqlWarehouse, server: FakeServer) -> None:
    server.failures.append(FakeDriverError.of(*SYNTAX_ERROR, "Incorrect syntax near 'FORM'"))
    with pytest.raises(BuildError, match="<inline>: statement 1 failed"):
        engine.run_sql("SELECT n FORM t")
    assert len(server.connections) == 1
    assert server.connections[0].rollbacks == 1


def test_inside_a_transaction_a_transient_error_is_not_retried(engine: AzureSqlWarehouse, server: FakeServer) -> None:
    server.failures.append(FakeDriverError.of(*DEADLOCK))
    with pytest.raises(WarehouseTransientError), engine.transaction():
        engine.run_sql("INSERT INTO t (d) VALUES (@d)", {"d": 1})
        engine.run_sql("INSERT INTO t (d) VALUES (@d)", {"d": 2})
    assert server.executed == []
    assert len(server.connections) == 1
    assert server.connections[0].rollbacks == 1
    assert server.connections[0].closed  # a transient failure replaces the connection
    engine.run_sql("SELECT n FROM t")
    assert len(server.connections) == 2


def test_nested_transactions_commit_once_at_the_outermost_block(engine: AzureSqlWarehouse, server: FakeServer) -> None:
    with engine.transaction():
        engine.run_sql("INSERT INTO t (d) VALUES (@d)", {"d": 1})
        with engine.transaction():
            engine.run_sql("INSERT INTO t (d) VALUES (@d)", {"d": 2})
        assert server.commits == 0
    assert server.commits == 1
    assert len(server.executed) == 2


def test_error_in_transaction_body_rolls_back_and_keeps_a_healthy_connection(
    engine: AzureSqlWarehouse, server: FakeServer
) -> None:
    with pytest.raises(ValueError, match="boom"), engine.transaction():
        engine.run_sql("INSERT INTO t (d) VALUES (@d)", {"d": 1})
        raise ValueError("boom")
    conn = server.connections[0]
    assert (conn.rollbacks, conn.commits, conn.closed) == (1, 0, False)


def test_another_threads_run_waits_for_the_open_transaction_and_commits_on_its_own(
    engine: AzureSqlWarehouse, server: FakeServer
) -> None:
    other_done = threading.Event()

    def other_thread() -> None:
        engine.run_sql("INSERT INTO t (d) VALUES (@d)", {"d": "other"})
        other_done.set()

    with engine.transaction():
        engine.run_sql("INSERT INTO t (d) VALUES (@d)", {"d": "mine"})
        worker = threading.Thread(target=other_thread)
        worker.start()
        assert not other_done.wait(0.2)  # it does not slip into this thread's transaction
        assert server.commits == 0
    worker.join(5)
    assert [params for _, params in server.executed] == [["mine"], ["other"]]
    assert server.commits == 2


# ---- bulk loads --------------------------------------------------------------------------------
def test_bulk_load_uses_fast_executemany_in_batches_with_empty_strings_as_null(
    engine: AzureSqlWarehouse, server: FakeServer
) -> None:
    rows = [("c1", "", 3), ("c2", "Acme, Inc.", None), ("c3", "x", 0)]
    assert engine.bulk_load("stg.t", ["company_id", "name", "n"], rows) == 3
    batches = server.connections[0].batches
    assert [b[0] for b in batches] == ["INSERT INTO stg.t (company_id, name, n) VALUES (?, ?, ?)"] * 2
    assert all(fast for _, fast, _ in batches)
    assert [b[2] for b in batches] == [[["c1", None, 3], ["c2", "Acme, Inc.", None]], [["c3", "x", 0]]]
    assert server.commits == 2  # outside a transaction each batch commits


def test_bulk_load_columns_turns_column_batches_into_fast_executemany_rows(
    engine: AzureSqlWarehouse, server: FakeServer
) -> None:
    batches = [(["c1", "c2"], ["", "Acme"], [3, None]), (["c3"], ["x"], [0])]
    assert engine.bulk_load_columns("stg.t", ["company_id", "name", "n"], batches) == 3
    sent = server.connections[0].batches
    assert all(fast for _, fast, _ in sent)
    assert [b[2] for b in sent] == [[["c1", None, 3], ["c2", "Acme", None]], [["c3", "x", 0]]]


def test_bulk_load_streams_one_batch_at_a_time(engine: AzureSqlWarehouse, server: FakeServer) -> None:
    produced = 0
    high_water = 0

    def rows() -> Iterator[tuple[int]]:
        nonlocal produced, high_water
        for i in range(11):
            produced += 1
            loaded = sum(len(b[2]) for c in server.connections for b in c.batches)
            high_water = max(high_water, produced - loaded)
            yield (i,)

    assert engine.bulk_load("stg.t", ["n"], rows()) == 11
    assert high_water <= engine.batch_size


def test_bulk_load_retries_only_the_failed_batch(engine: AzureSqlWarehouse, server: FakeServer) -> None:
    server.failures.extend([None, FakeDriverError.of("08S01", 10054)])
    assert engine.bulk_load("stg.t", ["n"], [(1,), (2,), (3,), (4,)]) == 4
    loaded = [row for c in server.connections for b in c.batches for row in b[2]]
    assert loaded == [[1], [2], [3], [4]]


def test_bulk_load_refuses_names_that_are_not_identifiers(engine: AzureSqlWarehouse) -> None:
    with pytest.raises(ValueError, match="column"):
        engine.bulk_load("stg.t", ["n; DROP TABLE x"], [(1,)])
    with pytest.raises(ValueError, match="table"):
        engine.bulk_load("t; DROP TABLE x", ["n"], [(1,)])


# ---- packaging ---------------------------------------------------------------------------------
def test_module_imports_without_pyodbc_and_says_what_is_missing_on_connect(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyodbc", None)  # makes `import pyodbc` raise ImportError
    monkeypatch.delitem(sys.modules, "shared.adapters.warehouse.azure_sql")
    fresh = importlib.import_module("shared.adapters.warehouse.azure_sql")
    assert fresh.AzureSqlWarehouse.DIALECT == "tsql"
    engine = fresh.AzureSqlWarehouse.from_settings(
        Settings(azure_sql_connection_string=CONNECTION_STRING, azure_sql_max_attempts=1)
    )
    with pytest.raises(ConfigurationError, match="libodbc"):
        engine.run_sql("SELECT 1 AS n")


# ---- the real driver ---------------------------------------------------------------------------
def _msodbcsql_driver() -> str | None:
    spec = importlib.util.find_spec("mssql_python_odbc")
    if spec is None or spec.origin is None:
        return None
    libs = Path(spec.origin).parent / "libs" / "linux"
    distro_order = ["debian_ubuntu", "rhel", "suse"]
    for distro in distro_order:
        found = sorted(glob.glob(str(libs / distro / platform.machine() / "lib" / "libmsodbcsql-18*.so*")))
        if found:
            return found[0]
    return None


def _unixodbc_present() -> bool:
    try:
        ctypes.CDLL("libodbc.so.2")
    except OSError:
        return False
    return True


def _closed_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_real_driver_login_failure_is_transient_and_retried_max_attempts_times() -> None:
    driver = _msodbcsql_driver()
    if not _unixodbc_present():
        pytest.skip("unixODBC's libodbc.so.2 is not installed (scripts/bootstrap.sh installs it with apt)")
    if driver is None:
        pytest.skip("no ODBC Driver 18 .so in the mssql-python-odbc wheel for this platform")
    settings = Settings(
        warehouse_engine="azure_sql",
        azure_sql_connection_string=(
            f"DRIVER={{{driver}}};SERVER=tcp:127.0.0.1,{_closed_loopback_port()};DATABASE=pipeline;"
            f"UID=pipeline;PWD={PASSWORD};Encrypt=no"
        ),
        azure_sql_max_attempts=3,
        azure_sql_login_timeout_s=1,
    )
    real_connect = connection_factory(settings)
    attempts = 0

    def counting_connect() -> Any:
        nonlocal attempts
        attempts += 1
        return real_connect()

    engine = AzureSqlWarehouse(counting_connect, max_attempts=settings.azure_sql_max_attempts, wait=wait_none())
    started = time.monotonic()
    with pytest.raises(WarehouseTransientError) as info:
        engine.run_sql("SELECT 1 AS n")
    assert attempts == settings.azure_sql_max_attempts
    sqlstate, natives = diagnostics(info.value.__cause__)
    assert sqlstate in {"HYT00", "08001"}
    assert is_transient(sqlstate, natives)
    assert PASSWORD not in str(info.value)
    assert time.monotonic() - started < 12  # the 1 s login timeout held (the driver default is 15 s)
