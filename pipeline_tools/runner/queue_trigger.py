"""The queue trigger: host.json's batch size, visibility timeout, maxDequeueCount and encoding."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.functions.queue import QueueMessage
from azure.storage.queue import QueueServiceClient

from pipeline_tools.runner.bindings import Invocation, Invoke, QueueTrigger, RegisteredFunction
from shared.adapters.queue_store import decode_body, encode_text
from shared.errors import MalformedMessage
from shared.host_config import QueueHostConfig

log = logging.getLogger(__name__)

# How long a received queue message stays invisible while its function runs (the host renews a
# similar lease; a crashed runner's message reappears after it).
QUEUE_LEASE = dt.timedelta(minutes=10)


# The producer's codec (shared/adapters/queue_store.py) is the one the runner decodes with, so
# the two can never disagree; UndecodableMessage is its MalformedMessage.
UndecodableMessage = MalformedMessage


def decode_message(content: str, encoding: str) -> bytes:
    return decode_body(content, encoding)


def encode_message(body: bytes, encoding: str) -> str:
    return encode_text(body.decode("utf-8"), encoding)


class QueueTriggerPoller:
    """Receives up to batchSize messages, calls the function per message, and settles each one
    the way the host does: delete on success; on failure make it visible again after
    visibilityTimeout, or move it to ``<queue>-poison`` once it was dequeued maxDequeueCount times."""

    def __init__(
        self, function: RegisteredFunction, trigger: QueueTrigger, queues: QueueServiceClient, config: QueueHostConfig
    ) -> None:
        self.function = function
        self.trigger = trigger
        self._queue = queues.get_queue_client(trigger.queue_name)  # no encode policy: raw text, decoded here
        self._poison = queues.get_queue_client(f"{trigger.queue_name}-poison")
        self._config = config

    def has_pending(self) -> bool:
        """Messages in the queue, visible or not (a failed one waiting out its visibility timeout)."""
        try:
            return (self._queue.get_queue_properties().approximate_message_count or 0) > 0
        except ResourceNotFoundError:
            return False

    def poll(self, invoke_function: Invoke) -> list[Invocation]:
        try:
            messages = list(
                self._queue.receive_messages(
                    max_messages=self._config.batch_size,
                    messages_per_page=self._config.batch_size,
                    visibility_timeout=int(QUEUE_LEASE.total_seconds()),
                )
            )
        except ResourceNotFoundError:
            return []  # the queue does not exist yet: nothing was sent
        results = []
        for message in messages:
            result = self._process(message, invoke_function)
            if result is not None:
                results.append(result)
        return results

    def _process(self, message: Any, invoke_function: Invoke) -> Invocation | None:
        dequeue_count = int(message.dequeue_count or 1)
        if dequeue_count > self._config.max_dequeue_count:
            # Delivered more often than allowed (a runner died mid-invocation): the host poisons it unseen.
            self._move_to_poison(message, "dequeue count above maxDequeueCount")
            return None
        try:
            body = decode_message(message.content or "", self._config.message_encoding)
        except UndecodableMessage as exc:
            self._move_to_poison(message, str(exc))
            return None
        trigger_data = {"queue": self.trigger.queue_name, "message_id": message.id, "dequeue_count": dequeue_count}
        argument = QueueMessage(  # the concrete class the worker builds (func.QueueMessage lacks dequeue_count)
            id=message.id,
            body=body,
            dequeue_count=dequeue_count,
            expiration_time=message.expires_on,
            insertion_time=message.inserted_on,
            time_next_visible=message.next_visible_on,
            pop_receipt=message.pop_receipt,
        )
        result = invoke_function(self.function, argument, trigger_data, "New queue message detected")
        if result.succeeded:
            self._queue.delete_message(message.id, message.pop_receipt)
        elif dequeue_count >= self._config.max_dequeue_count:
            self._move_to_poison(message, f"failed {dequeue_count} times")
        else:
            self._queue.update_message(
                message.id, message.pop_receipt, visibility_timeout=int(self._config.visibility_timeout.total_seconds())
            )
        return result

    def _move_to_poison(self, message: Any, why: str) -> None:
        """Copy the message text as received (so it keeps its encoding), then delete the original."""
        with contextlib.suppress(ResourceExistsError):
            self._poison.create_queue()
        self._poison.send_message(message.content or "")
        self._queue.delete_message(message.id, message.pop_receipt)
        log.warning(
            "Message %s of queue %s moved to %s: %s",
            message.id,
            self.trigger.queue_name,
            self._poison.queue_name,
            why,
            extra={"fields": {"function": self.function.name}},
        )
