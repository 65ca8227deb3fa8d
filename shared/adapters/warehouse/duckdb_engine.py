"""Embedded DuckDB warehouse: the local and CI default.

Runs the T-SQL files after translation (translate.py). One connection per process, guarded
by a lock: DuckDB allows one read-write process per file, and the Functions worker may run
invocations on several threads.
"""

from __future__ import annotations

import csv
import datetime as dt
import logging
import os
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from itertools import islice
from pathlib import Path
from typing import Any, ClassVar

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from shared.adapters.warehouse.base import Row, Warehouse, checked_table_name, traced_bulk_load
from shared.adapters.warehouse.sql_files import SQL_ROOT, Statement
from shared.adapters.warehouse.translate import to_duckdb
from shared.clock import naive_utc
from shared.errors import BuildError, ConfigurationError, WarehouseTransientError

log = logging.getLogger(__name__)

_COLUMN = "abcdefghijklmnopqrstuvwxyz0123456789_"
# Fixed CSV dialect for bulk loads: no sniffing, RFC 4180 quoting, empty field = NULL,
# long lines allowed (a CRM field may legitimately be very long).
_COPY_OPTIONS = (
    "(FORMAT csv, HEADER false, DELIMITER ',', QUOTE '\"', ESCAPE '\"', NULL '', "
    "NEW_LINE '\\n', AUTO_DETECT false, MAX_LINE_SIZE 67108864)"
)


# Memory of a range build per company-day: what one run of the build SQL works with (the fan-out
# GROUP BY and the MERGE's joins), and what an uncommitted write holds until COMMIT (the primary
# key's index entries and row data of the transaction: ~80 bytes per row in duckdb_memory(), ~120
# in RSS, measured at 20,000 companies; DuckDB cannot spill them). Both are set by speed, not only
# by fit: at 1.5GB and 100,000 companies a run of 9-12 days (0.9-1.2M company-days) peaks at
# 0.7-0.9 GB RSS and does ~145k company-days per CPU-second, while 15-30 days make the GROUP BY
# spill and halve that (~75k); and a piece late in a transaction has the open writes beside it,
# so a transaction holds about three pieces' rows (3M company-days at 1.5GB).
BUILD_BYTES_PER_COMPANY_DAY = 750
WRITE_BYTES_PER_COMPANY_DAY = 250
_BYTE_UNITS = {"": 1, "B": 1, "KB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4}
_BYTE_UNITS |= {"KIB": 1024, "MIB": 1024**2, "GIB": 1024**3, "TIB": 1024**4}


def parse_bytes(text: str) -> int:
    """'1.5GB' -> 1500000000 (DuckDB's own units: KB/MB/GB are powers of 1000, KiB/MiB/GiB of 1024)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text)
    if not match or match.group(2).upper() not in _BYTE_UNITS:
        raise ConfigurationError(f"setting DUCKDB_MEMORY_LIMIT: not a size like 1.5GB or 512MB: {text!r}")
    return int(float(match.group(1)) * _BYTE_UNITS[match.group(2).upper()])


class DuckDBWarehouse(Warehouse):
    DIALECT: ClassVar[str] = "duckdb"
    BULK_BATCH_ROWS: ClassVar[int] = 100_000
    BULK_COLUMNS_ROWS: ClassVar[int] = 4 * 122_880  # four of DuckDB's row groups

    def __init__(
        self, path: str | Path = ":memory:", sql_root: Path = SQL_ROOT, memory_limit: str | None = None
    ) -> None:
        super().__init__(sql_root)
        self.path = str(path)
        self._con = _open(self.path)
        if memory_limit:
            # Beyond the cap DuckDB spills joins and aggregates to <path>.tmp instead of failing,
            # and the builder keeps each build statement to what fits in it.
            self._con.execute("SET memory_limit = $limit", {"limit": memory_limit})
            half = parse_bytes(memory_limit) // 2  # half for a piece's work, half for the open writes
            self.build_piece_company_days = max(1, half // BUILD_BYTES_PER_COMPANY_DAY)
            self.build_transaction_company_days = max(1, half // WRITE_BYTES_PER_COMPANY_DAY)

    def _execute(self, statement: Statement, params: Mapping[str, Any]) -> list[Row] | None:
        sql = to_duckdb(statement)
        if sql is None:
            return None
        # Aware times are stored as naive UTC (DATETIME2), as on Azure SQL; DuckDB would
        # otherwise cast them through the session's local time zone.
        bound = {name: naive_utc(v) if isinstance(v, dt.datetime) else v for name, v in params.items()}
        with self._lock:
            try:
                cursor = self._con.execute(sql, bound) if bound else self._con.execute(sql)
            except duckdb.Error as exc:
                raise BuildError(
                    f"{statement.sql_file}: statement {statement.index} failed: {type(exc).__name__}: {exc}"
                ) from exc
            except RuntimeError as exc:
                raise _interrupt_or(exc) from exc
            if cursor.description is None:
                return None
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def _begin_transaction(self) -> None:
        self._con.execute("BEGIN TRANSACTION")

    def _commit_transaction(self) -> None:
        self._con.execute("COMMIT")

    def _rollback_transaction(self, error: BaseException) -> None:
        self._con.execute("ROLLBACK")

    @traced_bulk_load
    def bulk_load(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
        """Stream rows through a temporary CSV file and COPY, one batch at a time.

        COPY is ~3x faster than INSERT ... unnest and ~100x faster than executemany here, and
        a batch at a time keeps memory flat however many rows come.
        """
        table = checked_table_name(table)
        _check_columns(columns)
        column_list = ", ".join(columns)
        total = 0
        iterator = iter(rows)
        fd, tmp = tempfile.mkstemp(prefix="bulk_", suffix=".csv")
        os.close(fd)
        try:
            while True:
                batch = list(islice(iterator, self.BULK_BATCH_ROWS))
                if not batch:
                    break
                with open(tmp, "w", newline="", encoding="utf-8") as handle:
                    writer = csv.writer(handle, lineterminator="\n")
                    writer.writerows(_csv_rows(batch))
                with self._lock:
                    # The path is ours (mkstemp), not input; COPY cannot take it as a parameter.
                    self._con.execute(f"COPY {table} ({column_list}) FROM '{tmp}' {_COPY_OPTIONS}")
                total += len(batch)
        except duckdb.Error as exc:
            raise BuildError(f"bulk load into {table} failed: {type(exc).__name__}: {exc}") from exc
        except RuntimeError as exc:
            raise _interrupt_or(exc) from exc
        finally:
            os.unlink(tmp)
        return total

    @traced_bulk_load
    def bulk_load_columns(self, table: str, columns: Sequence[str], batches: Iterable[Sequence[Sequence[Any]]]) -> int:
        """Batches become Arrow tables that DuckDB reads in place (INSERT ... SELECT): no text
        round trip. They are gathered up to BULK_COLUMNS_ROWS rows per INSERT: DuckDB writes an
        insert of several row groups (122,880 rows) straight to the file instead of through the
        write-ahead log, about twice as fast; memory is one group of batches. Empty strings load
        as NULL, as in bulk_load.

        The rows are written uncompressed: this loads landing tables, whose rows are read once by
        the load SQL and deleted, and choosing a compression per column (the hash column is 64
        random hex digits) cost as much again as the write (~1 CPU-s per 1M CRM rows)."""
        table = checked_table_name(table)
        _check_columns(columns)
        insert = f"INSERT INTO {table} ({', '.join(columns)}) SELECT * FROM bulk_batch"
        total = 0
        pending: list[pa.Table] = []
        try:
            for batch in batches:
                pending.append(pa.table([_arrow_column(values) for values in batch], names=list(columns)))
                if sum(part.num_rows for part in pending) >= self.BULK_COLUMNS_ROWS:
                    total += self._insert_arrow(insert, pending)
                    pending = []
            if pending:
                total += self._insert_arrow(insert, pending)
        except duckdb.Error as exc:
            raise BuildError(f"bulk load into {table} failed: {type(exc).__name__}: {exc}") from exc
        except RuntimeError as exc:
            raise _interrupt_or(exc) from exc
        return total

    def _insert_arrow(self, insert: str, parts: list[pa.Table]) -> int:
        # A column all NULL in one batch has Arrow's null type: "permissive" gives it the others'.
        arrow = pa.concat_tables(parts, promote_options="permissive")
        with self._lock:
            self._con.register("bulk_batch", arrow)
            # Global, so set only while this INSERT runs under the lock (a checkpoint its commit
            # triggers would write other tables' changed row groups uncompressed too: rare, size only).
            self._con.execute("SET force_compression = 'uncompressed'")
            try:
                self._con.execute(insert)
            finally:
                self._con.execute("RESET force_compression")
                self._con.unregister("bulk_batch")
        return arrow.num_rows

    def log_bytes(self) -> int:
        """The size of the write-ahead log (<path>.wal): committed rows not yet checkpointed into
        the database file; 0 without one (in memory, or just checkpointed)."""
        wal = Path(self.path + ".wal")
        return wal.stat().st_size if self.path != ":memory:" and wal.exists() else 0

    def write_out_log(self, over_bytes: int) -> bool:
        """CHECKPOINT if the log holds more than ``over_bytes``: DuckDB otherwise writes it out at
        whichever later commit its own estimate pushes past ``checkpoint_threshold`` (16 MiB),
        which is then slower by the whole checkpoint."""
        with self._lock:
            if self._depth or self.log_bytes() <= over_bytes:
                return False
            try:
                self._con.execute("CHECKPOINT")
            except duckdb.Error as exc:  # the rows are committed; a later commit checkpoints them
                log.warning("checkpoint after a load failed: %s", exc)
                return False
        return True

    def close(self) -> None:
        with self._lock:
            self._con.close()


def _check_columns(columns: Sequence[str]) -> None:
    for column in columns:
        if not column or set(column) - set(_COLUMN):
            raise ValueError(f"not a column name: {column!r}")


def _arrow_column(values: Sequence[Any]) -> pa.Array:
    """One column as Arrow (its type inferred from the values; an Arrow array is taken as it is),
    empty strings as NULL and aware timestamps as naive UTC, as bulk_load writes them."""
    array = values if isinstance(values, pa.Array) else pa.array(values)
    if pa.types.is_string(array.type):
        array = pc.if_else(pc.equal(array, ""), pa.scalar(None, pa.string()), array)
    elif pa.types.is_timestamp(array.type) and array.type.tz is not None:
        array = array.cast(pa.timestamp(array.type.unit))  # keeps the UTC instant, drops the zone
    return array


def _interrupt_or(exc: RuntimeError) -> BaseException:
    """DuckDB turns Ctrl-C during a query into a plain RuntimeError("Query interrupted") (it has
    no type of its own, so the text is all there is). Raised again as KeyboardInterrupt, so no
    ``except Exception`` on the way up can mistake an operator's Ctrl-C for a failed query."""
    return KeyboardInterrupt() if "interrupted" in str(exc).lower() else exc


def _csv_rows(batch: list[Sequence[Any]]) -> Iterable[Sequence[Any]]:
    """Rows ready for csv.writer, converting only the columns that need it.

    csv.writer already writes None and "" as an empty field (NULL here), dates and naive
    datetimes in ISO form, and booleans as True/False, which COPY reads. Only timezone-aware
    datetimes need converting (to naive UTC). A column's type is taken from its first non-NULL
    value in the batch (values of one column share a type); skipping the per-value conversion
    makes a 1M-row CRM load ~1.5 s faster.
    """
    width = len(batch[0])
    if width == 1:  # csv writes a lone empty string as "", which COPY would read as text
        return ([_csv_value(v) for v in row] for row in batch)
    convert = [i for i in range(width) if isinstance(_first_value(batch, i), dt.datetime)]
    if not convert:
        return batch

    def converted(row: Sequence[Any]) -> list[Any]:
        out = list(row)
        for i in convert:
            out[i] = _csv_value(out[i])
        return out

    return (converted(row) for row in batch)


def _first_value(batch: list[Sequence[Any]], column: int) -> Any:
    return next((row[column] for row in batch if row[column] is not None), None)


def _csv_value(value: Any) -> Any:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        return naive_utc(value).isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _open(path: str) -> duckdb.DuckDBPyConnection:
    """Connect, turning the two ways this fails into one line that names the setting: the file
    is locked by another process (one writer per file: transient, a retry may get it), or it
    cannot be created or opened at all (configuration)."""
    try:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        return duckdb.connect(path)
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise WarehouseTransientError(
                f"setting DUCKDB_PATH: the warehouse file {path} is locked by another process "
                "(DuckDB allows one writer per file: stop the runner or CLI that has it open)"
            ) from exc
        raise ConfigurationError(f"setting DUCKDB_PATH: cannot open {path}: {str(exc).splitlines()[0]}") from exc
    except OSError as exc:
        raise ConfigurationError(f"setting DUCKDB_PATH: cannot create {path}: {exc.strerror or exc}") from exc
