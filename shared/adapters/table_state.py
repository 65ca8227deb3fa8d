"""Table Storage wrapper (azure-data-tables) with ETag-conditional writes.

INTERFACE PINNED BY THE FOUNDATION; bodies are implemented by the storage work.
"""

from __future__ import annotations

from typing import Any

from shared.settings import Settings


class StateTable:
    def __init__(self, table_client: Any) -> None:  # azure.data.tables.TableClient
        self._table = table_client

    @classmethod
    def from_settings(cls, settings: Settings, table_name: str | None = None) -> StateTable:
        raise NotImplementedError

    def ensure_exists(self) -> None:
        raise NotImplementedError

    def get(self, partition_key: str, row_key: str) -> tuple[dict[str, Any], str] | None:
        """(entity, etag) or None when absent."""
        raise NotImplementedError

    def insert(self, entity: dict[str, Any]) -> str:
        """Create; raises ConcurrencyConflict if it already exists. Returns the new etag."""
        raise NotImplementedError

    def update_if_match(self, entity: dict[str, Any], etag: str) -> str:
        """Replace only if the stored etag still equals ``etag``; else ConcurrencyConflict."""
        raise NotImplementedError

    def upsert(self, entity: dict[str, Any]) -> str:
        """Unconditional insert-or-replace (for state no one races on, e.g. receipts)."""
        raise NotImplementedError

    def query(
        self, partition_key: str, row_key_from: str | None = None, row_key_to: str | None = None
    ) -> list[dict[str, Any]]:
        """Entities of one partition, optionally within [row_key_from, row_key_to]."""
        raise NotImplementedError

    def delete(self, partition_key: str, row_key: str) -> None:
        raise NotImplementedError
