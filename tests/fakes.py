"""Test doubles shared by several test modules (import as ``from tests.fakes import ...``)."""

from __future__ import annotations

import itertools
from typing import Any

from shared.errors import ConcurrencyConflict


class InMemoryStateTable:
    """shared.adapters.table_state.StateTable in memory, with the contract services rely on:
    ``(entity, etag)`` reads, a new ETag per write, and ConcurrencyConflict when an insert finds
    the entity or a conditional update or delete finds another ETag (or none)."""

    def __init__(self, entities: list[dict[str, Any]] | None = None) -> None:
        self.rows: dict[tuple[str, str], tuple[dict[str, Any], str]] = {}
        self._etags = itertools.count(1)
        for entity in entities or []:
            self.upsert(entity)

    def get(self, partition_key: str, row_key: str) -> tuple[dict[str, Any], str] | None:
        found = self.rows.get((partition_key, row_key))
        return (dict(found[0]), found[1]) if found else None

    def insert(self, entity: dict[str, Any]) -> str:
        if _key(entity) in self.rows:
            raise ConcurrencyConflict("exists")
        return self._put(entity)

    def update_if_match(self, entity: dict[str, Any], etag: str) -> str:
        found = self.rows.get(_key(entity))
        if found is None or found[1] != etag:
            raise ConcurrencyConflict("etag")
        return self._put(entity)

    def upsert(self, entity: dict[str, Any]) -> str:
        return self._put(entity)

    def query(
        self, partition_key: str, row_key_from: str | None = None, row_key_to: str | None = None
    ) -> list[dict[str, Any]]:
        return [
            dict(entity)
            for (pk, rk), (entity, _) in sorted(self.rows.items())
            if pk == partition_key
            and (row_key_from is None or rk >= row_key_from)
            and (row_key_to is None or rk <= row_key_to)
        ]

    def delete(self, partition_key: str, row_key: str) -> None:
        self.rows.pop((partition_key, row_key), None)

    def delete_if_match(self, partition_key: str, row_key: str, etag: str) -> None:
        found = self.rows.get((partition_key, row_key))
        if found is not None and found[1] != etag:
            raise ConcurrencyConflict("etag")
        self.rows.pop((partition_key, row_key), None)

    def _put(self, entity: dict[str, Any]) -> str:
        etag = str(next(self._etags))
        self.rows[_key(entity)] = (dict(entity), etag)
        return etag


def _key(entity: dict[str, Any]) -> tuple[str, str]:
    return (entity["PartitionKey"], entity["RowKey"])
