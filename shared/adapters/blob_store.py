"""Blob Storage wrapper (azure-storage-blob): streaming reads, atomic whole-blob writes.

Works against Azurite and a real account (connection string, or managed identity through
DefaultAzureCredential when only PIPELINE_STORAGE__accountName is set).
Errors surface as ``shared.errors`` types (see ``storage_common.storage_errors``).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobBlock, BlobServiceClient, ContentSettings

from shared import telemetry
from shared.adapters.storage_common import (
    BLOB_QUEUE_RETRY,
    StorageNotFound,
    connection_string,
    identity_endpoint,
    storage_errors,
)
from shared.errors import UpstreamUnavailable
from shared.settings import Settings

# Chunks handed to write() are regrouped into blocks of this size: few enough blocks for the
# service's 50,000-block limit, small enough that memory stays flat while writing.
BLOCK_SIZE = 4 * 1024 * 1024
COPY_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class BlobInfo:
    container: str
    name: str
    etag: str
    size: int
    content_md5: str | None  # base64 MD5 as the service reports it, when known
    last_modified: Any  # datetime (UTC)
    metadata: dict[str, str]
    content_encoding: str | None = None  # e.g. "gzip"; None or "identity" for plain bytes


class BlobStore:
    """All blob I/O of the pipeline goes through this class."""

    def __init__(self, service_client: Any) -> None:  # azure.storage.blob.BlobServiceClient
        self._service = service_client

    @classmethod
    def from_settings(cls, settings: Settings) -> BlobStore:
        conn = connection_string(settings)
        if conn is not None:
            return cls(BlobServiceClient.from_connection_string(conn, **BLOB_QUEUE_RETRY))
        account_url, credential = identity_endpoint(settings, "blob")
        return cls(BlobServiceClient(account_url, credential=credential, **BLOB_QUEUE_RETRY))

    def ensure_container(self, container: str) -> None:
        """Create the container if it does not exist (idempotent)."""
        with storage_errors(f"create container {container}"), contextlib.suppress(ResourceExistsError):
            self._service.create_container(container)

    def info(self, container: str, name: str) -> BlobInfo | None:
        """Properties of a blob, or None when it does not exist."""
        with storage_errors(f"get properties of {container}/{name}"):
            try:
                props = self._blob(container, name).get_blob_properties()
            except ResourceNotFoundError:
                return None
        return _info_from_properties(container, props)

    def iter_chunks(
        self, container: str, name: str, chunk_size: int = 4 * 1024 * 1024, *, etag: str | None = None
    ) -> Iterator[bytes]:
        """Stream the blob's bytes, raw, in chunks; memory does not grow with blob size.

        Bytes are returned as stored: a ``Content-Encoding`` (gzip, deflate) is never undone
        here, since a small compressed blob may unpack to gigabytes in memory; the caller decides
        what an encoded blob means. Each chunk is one ranged GET of at most ``chunk_size`` bytes
        (the SDK's own ``chunks()`` makes its first GET as large as ``max_single_get_size``, 32 MiB).
        Every range is conditional on one ETag, ``etag`` when given (the version a trigger saw)
        or else the one read first, so a blob replaced mid-read raises ConcurrencyConflict instead
        of yielding a mix of two versions. Raises StorageNotFound when the blob does not exist.
        """
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        blob = self._blob(container, name)
        condition: dict[str, Any] = {}
        if etag is not None:
            condition = {"etag": etag, "match_condition": MatchConditions.IfNotModified}
        with storage_errors(f"read {container}/{name}"):
            props = blob.get_blob_properties(**condition)
        offset, total = 0, int(props.size)
        while offset < total:
            # A span per ranged GET, not one across the yields: the caller's work between chunks
            # must not become children of a read.
            with _traced("read", container, name, offset=offset), storage_errors(f"read {container}/{name}"):
                data = blob.download_blob(
                    offset=offset,
                    length=min(chunk_size, total - offset),
                    etag=props.etag,
                    match_condition=MatchConditions.IfNotModified,
                    max_concurrency=1,
                    decompress=False,
                ).readall()
            if not data:  # the service returned less than it said it had: never loop forever
                raise UpstreamUnavailable(f"read {container}/{name}: truncated at byte {offset} of {total}")
            yield data
            offset += len(data)

    def read_bytes(self, container: str, name: str) -> bytes:
        """Whole small blob (reports, manifests). Raises StorageNotFound when absent."""
        with _traced("read", container, name), storage_errors(f"read {container}/{name}"):
            return self._blob(container, name).download_blob(max_concurrency=1, decompress=False).readall()

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
        see a partial blob. ``data`` may be an iterable of chunks for large content.

        The content MD5 is computed while writing and stored as the blob's Content-MD5, so
        ``info().content_md5`` is known for every blob we write, however it was uploaded.
        With ``overwrite=False`` an existing blob raises ConcurrencyConflict.
        """
        with _traced("write", container, name) as span:
            if isinstance(data, bytes | bytearray | memoryview):
                info = self._write_bytes(container, name, bytes(data), content_type, metadata or {}, overwrite)
            else:
                info = self._write_blocks(container, name, data, content_type, metadata or {}, overwrite)
            span.set_attribute("blob.size", info.size)
            return info

    def _write_bytes(
        self, container: str, name: str, data: bytes, content_type: str, metadata: dict[str, str], overwrite: bool
    ) -> BlobInfo:
        md5 = hashlib.md5(data, usedforsecurity=False).digest()
        settings = ContentSettings(content_type=content_type, content_md5=bytearray(md5))
        with storage_errors(f"write {container}/{name}"):
            result = self._blob(container, name).upload_blob(
                data, overwrite=overwrite, content_settings=settings, metadata=metadata
            )
        return BlobInfo(container, name, result["etag"], len(data), _b64(md5), result["last_modified"], metadata)

    def _write_blocks(
        self,
        container: str,
        name: str,
        chunks: Iterable[bytes],
        content_type: str,
        metadata: dict[str, str],
        overwrite: bool,
    ) -> BlobInfo:
        blob = self._blob(container, name)
        # Block ids unique to this write: a concurrent writer of the same blob stages its own
        # uncommitted blocks, and whichever commit comes last wins whole.
        write_id = uuid.uuid4().hex
        md5 = hashlib.md5(usedforsecurity=False)
        block_ids: list[str] = []
        size = 0
        with storage_errors(f"write {container}/{name}"):
            for block in _regroup(chunks, BLOCK_SIZE):
                block_id = base64.b64encode(f"{write_id}-{len(block_ids):08d}".encode()).decode()
                blob.stage_block(block_id, block)
                block_ids.append(block_id)
                md5.update(block)
                size += len(block)
            condition: dict[str, Any] = {} if overwrite else {"match_condition": MatchConditions.IfMissing}
            result = blob.commit_block_list(
                [BlobBlock(block_id=b) for b in block_ids],
                content_settings=ContentSettings(content_type=content_type, content_md5=bytearray(md5.digest())),
                metadata=metadata,
                **condition,
            )
        return BlobInfo(container, name, result["etag"], size, _b64(md5.digest()), result["last_modified"], metadata)

    def copy(self, src_container: str, src_name: str, dst_container: str, dst_name: str) -> BlobInfo:
        """Server-side copy (same account), waiting until it completes.

        Content, content settings (incl. MD5) and metadata come from the source. Raises
        StorageNotFound when the source does not exist.
        """
        source_url = self._blob(src_container, src_name).url
        target = self._blob(dst_container, dst_name)
        operation = f"copy {src_container}/{src_name} to {dst_container}/{dst_name}"
        with _traced("copy", dst_container, dst_name, source=f"{src_container}/{src_name}"), storage_errors(operation):
            target.start_copy_from_url(source_url)
            props = self._wait_for_copy(target, operation)
        return _info_from_properties(dst_container, props)

    @staticmethod
    def _wait_for_copy(target: Any, operation: str) -> Any:
        # Same-account copies of block blobs usually complete before start_copy_from_url returns;
        # larger or cross-region ones are polled, with a deadline.
        deadline = time.monotonic() + COPY_TIMEOUT_S
        delay = 0.05
        while True:
            props = target.get_blob_properties()
            status = props.copy.status if props.copy else "success"
            if status == "success":
                return props
            if status != "pending":
                raise UpstreamUnavailable(f"{operation}: copy ended with status {status}")
            if time.monotonic() > deadline:
                raise UpstreamUnavailable(f"{operation}: still pending after {COPY_TIMEOUT_S:.0f}s")
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    def list(self, container: str, prefix: str | None = None) -> list[BlobInfo]:
        """Blobs whose name starts with ``prefix``, in name order; [] when the container is absent."""
        with storage_errors(f"list {container}/{prefix or ''}"):
            try:
                blobs = self._service.get_container_client(container).list_blobs(
                    name_starts_with=prefix, include=["metadata"]
                )
                return [_info_from_properties(container, props) for props in blobs]
            except ResourceNotFoundError:
                return []

    def delete(self, container: str, name: str) -> None:
        """Delete if present (idempotent)."""
        with (
            _traced("delete", container, name),
            storage_errors(f"delete {container}/{name}"),
            contextlib.suppress(ResourceNotFoundError),
        ):
            self._blob(container, name).delete_blob(delete_snapshots="include")

    def _blob(self, container: str, name: str) -> Any:
        return self._service.get_blob_client(container, name)


def _traced(operation: str, container: str, name: str, **attributes: Any) -> Any:
    """The span of one blob operation (``blob.read``, ``blob.write``, ...)."""
    return telemetry.span(
        f"blob.{operation}",
        attributes={"blob_name": name, "blob.container": container, **{f"blob.{k}": v for k, v in attributes.items()}},
    )


def _info_from_properties(container: str, props: Any) -> BlobInfo:
    md5 = props.content_settings.content_md5 if props.content_settings else None
    encoding = props.content_settings.content_encoding if props.content_settings else None
    return BlobInfo(
        container=container,
        name=props.name,
        etag=props.etag,
        size=props.size,
        content_md5=_b64(bytes(md5)) if md5 else None,
        last_modified=props.last_modified,
        metadata=dict(props.metadata or {}),
        content_encoding=encoding or None,
    )


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def _regroup(chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
    """Chunks of any size in, blocks of exactly ``size`` out (the last one shorter)."""
    buffer = bytearray()
    for chunk in chunks:
        buffer += chunk
        while len(buffer) >= size:
            yield bytes(buffer[:size])
            del buffer[:size]
    if buffer:
        yield bytes(buffer)


__all__ = ["BlobInfo", "BlobStore", "StorageNotFound"]
