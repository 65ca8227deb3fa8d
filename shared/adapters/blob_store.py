"""Blob Storage wrapper (azure-storage-blob): streaming reads, atomic whole-blob writes.

Works against Azurite and a real account (connection string, or managed identity through
DefaultAzureCredential when only PIPELINE_STORAGE__accountName is set).
INTERFACE PINNED BY THE FOUNDATION; bodies are implemented by the storage work.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from shared.settings import Settings


@dataclass(frozen=True)
class BlobInfo:
    container: str
    name: str
    etag: str
    size: int
    content_md5: str | None  # base64 MD5 as the service reports it, when known
    last_modified: Any  # datetime (UTC)
    metadata: dict[str, str]


class BlobStore:
    """All blob I/O of the pipeline goes through this class."""

    def __init__(self, service_client: Any) -> None:  # azure.storage.blob.BlobServiceClient
        self._service = service_client

    @classmethod
    def from_settings(cls, settings: Settings) -> BlobStore:
        raise NotImplementedError

    def ensure_container(self, container: str) -> None:
        """Create the container if it does not exist (idempotent)."""
        raise NotImplementedError

    def info(self, container: str, name: str) -> BlobInfo | None:
        """Properties of a blob, or None when it does not exist."""
        raise NotImplementedError

    def iter_chunks(self, container: str, name: str, chunk_size: int = 4 * 1024 * 1024) -> Iterator[bytes]:
        """Stream the blob's bytes in chunks; memory does not grow with blob size."""
        raise NotImplementedError

    def read_bytes(self, container: str, name: str) -> bytes:
        """Whole small blob (reports, manifests)."""
        raise NotImplementedError

    def write(
        self,
        container: str,
        name: str,
        data: bytes | Iterable[bytes],
        *,
        content_type: str = "application/octet-stream",
        metadata: dict[str, str] | None = None,
        overwrite: bool = True,
    ) -> BlobInfo:
        """Write a blob whole or not at all (block list committed at the end): readers never
        see a partial blob. ``data`` may be an iterable of chunks for large content."""
        raise NotImplementedError

    def copy(self, src_container: str, src_name: str, dst_container: str, dst_name: str) -> BlobInfo:
        """Server-side copy (same account), waiting until it completes."""
        raise NotImplementedError

    def list(self, container: str, prefix: str | None = None) -> list[BlobInfo]:
        raise NotImplementedError

    def delete(self, container: str, name: str) -> None:
        """Delete if present (idempotent)."""
        raise NotImplementedError
