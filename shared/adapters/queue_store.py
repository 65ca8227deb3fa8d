"""Queues (azure-storage-queue), encoded exactly as host.json tells the host to decode.

The Functions host decodes queue messages per ``extensions.queues.messageEncoding`` (base64 by
default). A producer that sends plain text while the host expects base64 gets every message
rejected, so both classes here take the encoding from ``shared.host_config.queue_config()``
rather than choosing one.

- ``BuildQueue``: the producer side of the build queue (JSON payloads).
- ``QueueStore``: raw queue operations a queue-trigger runner needs (receive with a visibility
  timeout, delete, extend visibility, send raw text to another queue such as ``<queue>-poison``).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import json
import logging
from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from shared.adapters.storage_common import (
    BLOB_QUEUE_RETRY,
    connection_string,
    identity_endpoint,
    storage_errors,
)
from shared.errors import ConfigurationError, MalformedMessage
from shared.host_config import queue_config
from shared.settings import Settings

logger = logging.getLogger(__name__)

ENCODINGS = ("base64", "none")
PEEK_LIMIT = 32  # the service returns at most 32 messages per peek or receive


def host_message_encoding() -> str:
    """host.json's extensions.queues.messageEncoding, validated."""
    encoding = queue_config().message_encoding
    if encoding not in ENCODINGS:
        raise ConfigurationError(f"host.json extensions.queues.messageEncoding: {encoding!r} is not one of {ENCODINGS}")
    return encoding


def encode_text(text: str, encoding: str) -> str:
    """The queue message text the host decodes back into ``text``."""
    if encoding == "base64":
        return base64.b64encode(text.encode("utf-8")).decode("ascii")
    return text


def decode_body(message_text: str, encoding: str) -> bytes:
    """The bytes the host hands the function (``QueueMessage.get_body()``) for a stored message."""
    if encoding == "base64":
        try:
            return base64.b64decode(message_text, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise MalformedMessage("queue message is not valid base64, as host.json messageEncoding requires") from exc
    return message_text.encode("utf-8")


def _queue_client(settings: Settings, queue_name: str, **options: Any) -> Any:
    conn = connection_string(settings)
    if conn is not None:
        return QueueClient.from_connection_string(conn, queue_name, **BLOB_QUEUE_RETRY, **options)
    account_url, credential = identity_endpoint(settings, "queue")
    return QueueClient(account_url, queue_name, credential=credential, **BLOB_QUEUE_RETRY, **options)


def _ensure_queue(queue_client: Any, name: str) -> None:
    with storage_errors(f"create queue {name}"), contextlib.suppress(ResourceExistsError):
        queue_client.create_queue()


class BuildQueue:
    """Producer of build messages: JSON, encoded as host.json's messageEncoding says."""

    def __init__(self, queue_client: Any) -> None:  # azure.storage.queue.QueueClient
        self._queue = queue_client

    @classmethod
    def from_settings(cls, settings: Settings, queue_name: str | None = None) -> BuildQueue:
        """Client for settings.build_queue (or queue_name) whose encode policy matches
        host.json ``extensions.queues.messageEncoding`` (base64 → TextBase64EncodePolicy)."""
        policies: dict[str, Any] = {}
        if host_message_encoding() == "base64":
            policies = {
                "message_encode_policy": TextBase64EncodePolicy(),
                "message_decode_policy": TextBase64DecodePolicy(),
            }
        return cls(_queue_client(settings, queue_name or settings.build_queue, **policies))

    @property
    def name(self) -> str:
        return str(self._queue.queue_name)

    def ensure_exists(self) -> None:
        _ensure_queue(self._queue, self.name)

    def send(self, payload: dict[str, Any], visibility_timeout_s: int | None = None) -> str:
        """Send a JSON message; returns the message id."""
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=_json_default)
        with storage_errors(f"send to queue {self.name}"):
            message = self._queue.send_message(text, visibility_timeout=visibility_timeout_s)
        return str(message.id)

    def peek_all(self, max_messages: int = 32) -> list[dict[str, Any]]:
        """Decoded JSON payloads currently visible (for status, tests). Messages that are not
        JSON objects are logged and left out: they stay in the queue for the builder to reject."""
        with storage_errors(f"peek queue {self.name}"):
            messages = self._queue.peek_messages(max_messages=min(max_messages, PEEK_LIMIT))
        payloads = []
        for message in messages:
            try:
                payload = json.loads(message.content)
            except (TypeError, ValueError):
                payload = None
            if isinstance(payload, dict):
                payloads.append(payload)
            else:
                logger.warning("queue %s: message %s is not a JSON object", self.name, message.id)
        return payloads


@dataclass(frozen=True)
class ReceivedMessage:
    """A message received (and hidden for its visibility timeout) from a queue."""

    id: str
    pop_receipt: str
    dequeue_count: int
    text: str  # as stored in the queue (base64 when host.json says so)
    inserted_on: dt.datetime | None
    next_visible_on: dt.datetime | None


class QueueStore:
    """Raw, undecoded access to one queue: what a queue-trigger runner needs.

    Messages are read and written as the text stored in the queue (no SDK encode/decode
    policy), so a message moved to ``<queue>-poison`` keeps exactly its original content, as
    the Functions host does. ``body()`` decodes a message the way the host does.
    """

    def __init__(self, queue_client: Any, encoding: str | None = None) -> None:
        self._queue = queue_client
        self._encoding = encoding or host_message_encoding()
        self._settings: Settings | None = None

    @classmethod
    def from_settings(cls, settings: Settings, queue_name: str | None = None) -> QueueStore:
        store = cls(_queue_client(settings, queue_name or settings.build_queue))
        store._settings = settings
        return store

    def named(self, queue_name: str) -> QueueStore:
        """Another queue of the same account (e.g. ``f"{store.name}-poison"``)."""
        if self._settings is None:
            raise ConfigurationError("QueueStore.named needs a store built with from_settings")
        return QueueStore.from_settings(self._settings, queue_name)

    @property
    def name(self) -> str:
        return str(self._queue.queue_name)

    @property
    def encoding(self) -> str:
        return self._encoding

    def ensure_exists(self) -> None:
        _ensure_queue(self._queue, self.name)

    def body(self, message: ReceivedMessage) -> bytes:
        """The bytes the host passes the function; MalformedMessage if they cannot be decoded."""
        return decode_body(message.text, self._encoding)

    def send_text(self, text: str, visibility_timeout_s: int | None = None) -> str:
        """Send ``text`` as stored content (already encoded, e.g. a message being moved)."""
        with storage_errors(f"send to queue {self.name}"):
            return str(self._queue.send_message(text, visibility_timeout=visibility_timeout_s).id)

    def send_payload(self, payload: bytes | str, visibility_timeout_s: int | None = None) -> str:
        """Send a payload encoded the way the host will decode it."""
        text = payload.decode("utf-8") if isinstance(payload, bytes) else payload
        return self.send_text(encode_text(text, self._encoding), visibility_timeout_s)

    def receive(self, max_messages: int = 1, visibility_timeout_s: int = 30) -> list[ReceivedMessage]:
        """Receive up to ``max_messages`` (≤ 32), hiding each for ``visibility_timeout_s``."""
        with storage_errors(f"receive from queue {self.name}"):
            messages = self._queue.receive_messages(
                messages_per_page=min(max_messages, PEEK_LIMIT),
                max_messages=min(max_messages, PEEK_LIMIT),
                visibility_timeout=visibility_timeout_s,
            )
            return [_received(m) for m in messages]

    def peek(self, max_messages: int = PEEK_LIMIT) -> list[str]:
        """Stored texts of visible messages, without receiving them."""
        with storage_errors(f"peek queue {self.name}"):
            return [m.content for m in self._queue.peek_messages(max_messages=min(max_messages, PEEK_LIMIT))]

    def peek_messages(self, max_messages: int = PEEK_LIMIT) -> list[ReceivedMessage]:
        """Visible messages with their ids, without receiving them (no pop receipt: read only)."""
        with storage_errors(f"peek queue {self.name}"):
            try:
                peeked = self._queue.peek_messages(max_messages=min(max_messages, PEEK_LIMIT))
            except ResourceNotFoundError:
                return []
        return [ReceivedMessage(m.id, "", int(m.dequeue_count or 0), m.content, m.inserted_on, None) for m in peeked]

    def delete(self, message: ReceivedMessage) -> None:
        """Delete a received message; a message already gone is not an error."""
        with storage_errors(f"delete from queue {self.name}"), contextlib.suppress(ResourceNotFoundError):
            self._queue.delete_message(message.id, message.pop_receipt)

    def update_visibility(self, message: ReceivedMessage, visibility_timeout_s: int) -> ReceivedMessage:
        """Hide the message for ``visibility_timeout_s`` more seconds (0: visible again now).
        Returns the message with its new pop receipt, which later calls must use."""
        with storage_errors(f"update message in queue {self.name}"):
            updated = self._queue.update_message(
                message.id, message.pop_receipt, visibility_timeout=visibility_timeout_s
            )
        return ReceivedMessage(
            id=message.id,
            pop_receipt=updated.pop_receipt,
            dequeue_count=message.dequeue_count,
            text=message.text,
            inserted_on=message.inserted_on,
            next_visible_on=updated.next_visible_on,
        )

    def approximate_count(self) -> int:
        with storage_errors(f"count queue {self.name}"):
            return int(self._queue.get_queue_properties().approximate_message_count or 0)

    def clear(self) -> None:
        with storage_errors(f"clear queue {self.name}"):
            self._queue.clear_messages()


def _received(message: Any) -> ReceivedMessage:
    return ReceivedMessage(
        id=message.id,
        pop_receipt=message.pop_receipt,
        dequeue_count=int(message.dequeue_count or 0),
        text=message.content,
        inserted_on=message.inserted_on,
        next_visible_on=message.next_visible_on,
    )


def _json_default(value: Any) -> str:
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
