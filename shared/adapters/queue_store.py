"""The build queue (azure-storage-queue), encoded exactly as host.json tells the host to decode.

INTERFACE PINNED BY THE FOUNDATION; bodies are implemented by the storage work.
"""

from __future__ import annotations

from typing import Any

from shared.settings import Settings


class BuildQueue:
    def __init__(self, queue_client: Any) -> None:  # azure.storage.queue.QueueClient
        self._queue = queue_client

    @classmethod
    def from_settings(cls, settings: Settings, queue_name: str | None = None) -> BuildQueue:
        """Client for settings.build_queue (or queue_name) whose encode policy matches
        host.json ``extensions.queues.messageEncoding`` (base64 → TextBase64EncodePolicy)."""
        raise NotImplementedError

    def ensure_exists(self) -> None:
        raise NotImplementedError

    def send(self, payload: dict[str, Any], visibility_timeout_s: int | None = None) -> str:
        """Send a JSON message; returns the message id."""
        raise NotImplementedError

    def peek_all(self, max_messages: int = 32) -> list[dict[str, Any]]:
        """Decoded JSON payloads currently visible (for status, tests)."""
        raise NotImplementedError
