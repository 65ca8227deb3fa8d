"""The blob trigger: new or changed blobs polled, one invocation per ETag, receipts and poison
as the host keeps them."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContainerClient
from azure.storage.queue import QueueClient

from pipeline_tools.runner.bindings import HOSTS_CONTAINER, BlobTrigger, Invocation, Invoke, RegisteredFunction
from pipeline_tools.runner.queue_trigger import encode_message
from shared.clock import Clock
from shared.host_config import QueueHostConfig
from shared.services.poison import BLOB_POISON_QUEUE

log = logging.getLogger(__name__)


class BlobTriggerPoller:
    """Finds new or changed blobs under the bound path and calls the function once per ETag.

    Receipts live in ``azure-webjobs-hosts/blobreceipts/<host>/<function>/<etag>/<container>/<blob>``
    like the host's, so restarting the runner does not re-run processed blobs. A receipt's
    metadata counts failures; the ETag is given up (poison message) at maxDequeueCount, the same
    limit the host applies to blob triggers.
    """

    def __init__(
        self,
        function: RegisteredFunction,
        trigger: BlobTrigger,
        blobs: BlobServiceClient,
        host_blobs: BlobServiceClient,
        poison_queue: QueueClient,
        config: QueueHostConfig,
        host_id: str,
        clock: Clock,
    ) -> None:
        self.function = function
        self.trigger = trigger
        self._blobs = blobs
        self._receipts: ContainerClient = host_blobs.get_container_client(HOSTS_CONTAINER)
        self._poison = poison_queue
        self._config = config
        self._host_id = host_id
        self._clock = clock
        self._done: set[tuple[str, str]] = set()  # (blob name, etag) known to have a complete receipt
        self._retry_at: dict[tuple[str, str], dt.datetime] = {}

    def has_pending(self) -> bool:
        """A failed blob is waiting for its retry."""
        return bool(self._retry_at)

    def poll(self, invoke_function: Invoke) -> list[Invocation]:
        container = self._blobs.get_container_client(self.trigger.container)
        try:
            listed = [
                (blob.name, blob.etag)
                for blob in container.list_blobs(name_starts_with=self.trigger.list_prefix or None)
                if self.trigger.matches(blob.name)
            ]
        except ResourceNotFoundError:
            return []  # the container does not exist yet: nothing has landed
        return [
            result
            for name, etag in listed
            if (result := self._process(container, name, etag, invoke_function)) is not None
        ]

    def _process(self, container: ContainerClient, name: str, etag: str, invoke_function: Invoke) -> Invocation | None:
        key = (name, etag)
        if key in self._done:
            return None
        retry_at = self._retry_at.get(key)
        if retry_at is not None and self._clock() < retry_at:
            return None
        receipt = self._read_receipt(name, etag)
        if receipt.get("completed") == "true":
            self._done.add(key)
            self._retry_at.pop(key, None)
            return None
        failures = int(receipt.get("failures", "0"))
        trigger_data = {"container": self.trigger.container, "name": name, "etag": etag, "attempt": failures + 1}
        result = invoke_function(self.function, container.get_blob_client(name), trigger_data, "New blob detected")
        if result.succeeded:
            self._finish(key, {"completed": "true", "failures": str(failures)})
            return result
        failures += 1
        if failures >= self._config.max_dequeue_count:
            self._send_to_poison(name, etag)
            self._finish(key, {"completed": "true", "failures": str(failures), "poisoned": "true"})
        else:
            self._write_receipt(name, etag, {"completed": "false", "failures": str(failures)})
            self._retry_at[key] = self._clock() + self._config.visibility_timeout
        return result

    def _finish(self, key: tuple[str, str], metadata: dict[str, str]) -> None:
        self._write_receipt(*key, metadata)
        self._done.add(key)
        self._retry_at.pop(key, None)

    def _receipt_name(self, name: str, etag: str) -> str:
        bare_etag = etag.strip('"')
        return f"blobreceipts/{self._host_id}/{self.function.host_id}/{bare_etag}/{self.trigger.container}/{name}"

    def _read_receipt(self, name: str, etag: str) -> dict[str, str]:
        try:
            return dict(self._receipts.get_blob_client(self._receipt_name(name, etag)).get_blob_properties().metadata)
        except ResourceNotFoundError:
            return {}

    def _write_receipt(self, name: str, etag: str, metadata: dict[str, str]) -> None:
        with contextlib.suppress(ResourceExistsError):
            self._receipts.create_container()
        self._receipts.upload_blob(self._receipt_name(name, etag), b"", overwrite=True, metadata=metadata)

    def _send_to_poison(self, name: str, etag: str) -> None:
        """The host's poison message body, so tooling that reads it works the same."""
        message = {
            "Type": "BlobTrigger",
            "FunctionId": self.function.host_id,
            "BlobType": "BlockBlob",
            "ContainerName": self.trigger.container,
            "BlobName": name,
            "ETag": etag,
        }
        with contextlib.suppress(ResourceExistsError):
            self._poison.create_queue()
        self._poison.send_message(encode_message(json.dumps(message).encode("utf-8"), self._config.message_encoding))
        log.warning(
            "Blob %s/%s (ETag %s) failed %d times; moved to %s",
            self.trigger.container,
            name,
            etag,
            self._config.max_dequeue_count,
            BLOB_POISON_QUEUE,
            extra={"fields": {"function": self.function.name}},
        )
