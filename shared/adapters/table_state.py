"""Table Storage wrapper (azure-data-tables) with ETag-conditional writes.

Entities go in and come out as plain dicts (``PartitionKey``, ``RowKey`` and the properties);
the service's metadata is reduced to the ETag, which is what optimistic concurrency needs:
read ``(entity, etag)``, decide, then ``update_if_match(entity, etag)``; a concurrent writer
makes that raise ConcurrencyConflict (a TransientError: re-read and decide again).
``retry_on_conflict`` is the one policy for those read-decide-write loops.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable
from typing import Any, NoReturn

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables import EdmType, EntityProperty, TableClient, UpdateMode
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from shared.adapters.storage_common import TABLE_RETRY, connection_string, identity_endpoint, storage_errors
from shared.errors import ConcurrencyConflict
from shared.settings import Settings

_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1


def retry_on_conflict(attempts: int, what: str, sleep: Callable[[float], None] = time.sleep) -> Retrying:
    """The retry policy of a read-decide-write loop over ETag-conditional writes: a lost race
    (ConcurrencyConflict) runs the whole loop body again (re-read, decide, write) after a short
    jitter that grows with the attempt, so contending writers spread out; after ``attempts``
    lost races it raises ConcurrencyConflict naming ``what``. Call it with the loop body:
    ``retry_on_conflict(5, "state of 2025-03-01")(write_once, ...)``."""

    def jitter(state: RetryCallState) -> float:
        return random.uniform(0, 0.02 * state.attempt_number)  # noqa: S311 - jitter, not crypto

    def give_up(state: RetryCallState) -> NoReturn:
        lost = state.outcome.exception() if state.outcome is not None else None
        raise ConcurrencyConflict(f"{what}: still contended after {attempts} attempts") from lost

    return Retrying(
        retry=retry_if_exception_type(ConcurrencyConflict),
        stop=stop_after_attempt(attempts),
        wait=jitter,
        sleep=sleep,
        retry_error_callback=give_up,
    )


class StateTable:
    def __init__(self, table_client: Any) -> None:  # azure.data.tables.TableClient
        self._table = table_client

    @classmethod
    def from_settings(cls, settings: Settings, table_name: str | None = None) -> StateTable:
        name = table_name or settings.state_table
        conn = connection_string(settings)
        if conn is not None:
            return cls(TableClient.from_connection_string(conn, name, **TABLE_RETRY))
        endpoint, credential = identity_endpoint(settings, "table")
        return cls(TableClient(endpoint, name, credential=credential, **TABLE_RETRY))

    @property
    def name(self) -> str:
        return str(self._table.table_name)

    def ensure_exists(self) -> None:
        with storage_errors(f"create table {self.name}"), contextlib.suppress(ResourceExistsError):
            self._table.create_table()

    def get(self, partition_key: str, row_key: str) -> tuple[dict[str, Any], str] | None:
        """(entity, etag) or None when absent."""
        with storage_errors(f"get {self.name}({partition_key}, {row_key})"):
            try:
                entity = self._table.get_entity(partition_key, row_key)
            except ResourceNotFoundError:
                return None
        return _plain(entity), str(entity.metadata["etag"])

    def insert(self, entity: dict[str, Any]) -> str:
        """Create; raises ConcurrencyConflict if it already exists. Returns the new etag."""
        with storage_errors(f"insert into {self.name}{_key(entity)}"):
            return str(self._table.create_entity(_typed(entity))["etag"])

    def update_if_match(self, entity: dict[str, Any], etag: str) -> str:
        """Replace only if the stored etag still equals ``etag``; else ConcurrencyConflict
        (also when the entity was deleted since it was read)."""
        operation = f"update {self.name}{_key(entity)}"
        with storage_errors(operation):
            try:
                result = self._table.update_entity(
                    _typed(entity), mode=UpdateMode.REPLACE, etag=etag, match_condition=MatchConditions.IfNotModified
                )
            except ResourceNotFoundError as exc:
                raise ConcurrencyConflict(f"{operation}: deleted concurrently") from exc
        return str(result["etag"])

    def upsert(self, entity: dict[str, Any]) -> str:
        """Unconditional insert-or-replace (for state no one races on, e.g. receipts)."""
        with storage_errors(f"upsert {self.name}{_key(entity)}"):
            return str(self._table.upsert_entity(_typed(entity), mode=UpdateMode.REPLACE)["etag"])

    def query(
        self, partition_key: str, row_key_from: str | None = None, row_key_to: str | None = None
    ) -> list[dict[str, Any]]:
        """Entities of one partition, optionally within [row_key_from, row_key_to], in RowKey order."""
        clauses = ["PartitionKey eq @pk"]
        parameters: dict[str, Any] = {"pk": partition_key}
        if row_key_from is not None:
            clauses.append("RowKey ge @rk_from")
            parameters["rk_from"] = row_key_from
        if row_key_to is not None:
            clauses.append("RowKey le @rk_to")
            parameters["rk_to"] = row_key_to
        with storage_errors(f"query {self.name}({partition_key})"):
            entities = self._table.query_entities(" and ".join(clauses), parameters=parameters)
            return [_plain(entity) for entity in entities]

    def delete(self, partition_key: str, row_key: str) -> None:
        """Delete if present (idempotent)."""
        with storage_errors(f"delete {self.name}({partition_key}, {row_key})"):
            self._table.delete_entity(partition_key, row_key)  # the SDK treats 404 as done

    def delete_if_match(self, partition_key: str, row_key: str, etag: str) -> None:
        """Delete only if unchanged since read; ConcurrencyConflict otherwise. Absent: done."""
        with storage_errors(f"delete {self.name}({partition_key}, {row_key})"):
            self._table.delete_entity(partition_key, row_key, etag=etag, match_condition=MatchConditions.IfNotModified)


def _typed(entity: dict[str, Any]) -> dict[str, Any]:
    """Plain dict in, SDK entity out: ints beyond 32 bits need an explicit Int64 type (the SDK
    would otherwise refuse them), so callers can store any Python int."""
    return {
        name: EntityProperty(value, EdmType.INT64)
        if isinstance(value, int) and not isinstance(value, bool) and not _INT32_MIN <= value <= _INT32_MAX
        else value
        for name, value in entity.items()
    }


def _plain(entity: Any) -> dict[str, Any]:
    """A TableEntity as a plain dict: typed wrappers (Int64, ...) unwrapped to their values."""
    return {name: value.value if isinstance(value, EntityProperty) else value for name, value in entity.items()}


def _key(entity: dict[str, Any]) -> str:
    return f"({entity.get('PartitionKey')}, {entity.get('RowKey')})"
