"""Local trigger runner: drives the functions registered in ``function_app.py`` from Azurite.

This is the local stand-in for Azure Functions Core Tools (``func start``) on machines that do
not have it. It is NOT a replacement for the Functions host in Azure: there the host (and its
scale controller) delivers blobs, queue messages and timer ticks, and this module is not used.
It reproduces what our functions rely on, closely enough that the same functions run locally
as in Azure:

- Registered functions are data: bindings are read from ``app.get_functions()``, and
  ``%SETTING%`` references are resolved from the app settings (environment variables), as the
  host does. There is no second list of functions here.
- Blob trigger: the bound ``<container>/<pattern>`` is polled, whatever the binding's ``source``:
  with ``source=EventGrid`` (what function_app.py uses, as Flex Consumption requires) Azure
  delivers each BlobCreated event through an Event Grid subscription to the host's blob
  extension webhook, which cannot reach a local machine, so the runner's poll stands in for the
  subscription and the function sees the same BlobClient either way. A blob is processed once per
  ETag (receipts in the ``azure-webjobs-hosts`` container, like the host); after
  ``maxDequeueCount`` failures a message goes to ``webjobs-blobtrigger-poison`` and that ETag
  is not retried. The function receives an ``azure.storage.blob.BlobClient`` (what the SDK-type
  binding ``azurefunctions.extensions.bindings.blob.BlobClient`` resolves to).
- Queue trigger: host.json ``extensions.queues`` is honoured (messageEncoding, maxDequeueCount,
  visibilityTimeout, batchSize); exhausted messages move to ``<queue>-poison``.
- Timer trigger: six-field NCRONTAB (seconds first), UTC; with ``useMonitor`` the schedule
  status is kept in storage so a tick missed while the runner was down fires as past due.
  ``fire_timer`` runs one now (the admin-API "run now" of Core Tools).
- Settings: ``local.settings.json`` ``Values`` are exported to the environment without
  overriding variables already set, as Core Tools does, before the first invocation.

Every invocation is logged as one structured line: function, trigger data, outcome, duration.

    python -m pipeline_tools.runner --settings local.settings.json --once --fire-timer
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib
import json
import logging
import os
import re
import signal
import threading
import time
import traceback
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import azure.functions as func
import click
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.functions.queue import QueueMessage
from azure.functions.timer import TimerRequest
from azure.storage.blob import BlobServiceClient, ContainerClient
from azure.storage.queue import QueueClient, QueueServiceClient
from croniter import croniter

from shared.adapters.queue_store import decode_body, encode_text
from shared.adapters.storage_common import BLOB_QUEUE_RETRY, default_credential, storage_errors
from shared.clock import Clock, utc_now
from shared.errors import ConfigurationError, MalformedMessage, PipelineError
from shared.host_config import HOST_JSON, QueueHostConfig, queue_config
from shared.logs import configure_logging, log_context, redact
from shared.services.poison import BLOB_POISON_QUEUE
from shared.settings import Settings, read_local_settings

log = logging.getLogger(__name__)

# Names the Functions host uses for its own bookkeeping; kept so an operator who knows the host
# recognises them in Azurite (and so a later `func start` on the same storage agrees with us).
HOSTS_CONTAINER = "azure-webjobs-hosts"
DEFAULT_HOST_ID = "local-runner"
# How long a received queue message stays invisible while its function runs (the host renews a
# similar lease; a crashed runner's message reappears after it).
QUEUE_LEASE = dt.timedelta(minutes=10)


# ======================================================================================
# Settings, as Core Tools hands them to the worker (read by shared.settings.read_local_settings)
# ======================================================================================
def export_values(values: Mapping[str, str], environ: MutableMapping[str, str]) -> None:
    """Put the Values into the environment, never overriding a variable already set (Core Tools'
    rule: the shell wins, so one value can be changed for one run without editing the file)."""
    for name, value in values.items():
        environ.setdefault(name, value)


_SETTING_REFERENCE = re.compile(r"%([^%]+)%")


def resolve_setting_references(text: str, environ: Mapping[str, str]) -> str:
    """Replace ``%NAME%`` with app setting NAME, as the host does for binding expressions."""

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        value = environ.get(name, "")
        if not value:
            raise ConfigurationError(f"setting {name}: referenced as %{name}% by a binding but not set")
        return value

    return _SETTING_REFERENCE.sub(lookup, text)


# ======================================================================================
# Storage connections, resolved from a binding's `connection=` the way the host does
# ======================================================================================
@dataclass(frozen=True)
class StorageConnection:
    """Where a binding's storage lives: a connection string, or an account for managed identity."""

    setting: str
    connection_string: str | None = None
    account_name: str | None = None

    def blob_service(self) -> BlobServiceClient:
        if self.connection_string:
            return BlobServiceClient.from_connection_string(self.connection_string, **BLOB_QUEUE_RETRY)
        return BlobServiceClient(
            f"https://{self.account_name}.blob.core.windows.net", credential=default_credential(), **BLOB_QUEUE_RETRY
        )

    def queue_service(self) -> QueueServiceClient:
        if self.connection_string:
            return QueueServiceClient.from_connection_string(self.connection_string, **BLOB_QUEUE_RETRY)
        account_url = f"https://{self.account_name}.queue.core.windows.net"
        return QueueServiceClient(account_url, credential=default_credential(), **BLOB_QUEUE_RETRY)


def resolve_connection(setting: str, environ: Mapping[str, str]) -> StorageConnection:
    """The host's lookup order: NAME, then AzureWebJobsNAME, then identity-based NAME__accountName."""
    for name in (setting, f"AzureWebJobs{setting}"):
        if environ.get(name, "").strip():
            return StorageConnection(setting, connection_string=environ[name])
    account = environ.get(f"{setting}__accountName", "").strip()
    if account:
        return StorageConnection(setting, account_name=account)
    raise ConfigurationError(
        f"setting {setting}: storage connection not set (a connection string, or {setting}__accountName)"
    )


# ======================================================================================
# Bindings as data
# ======================================================================================
@dataclass(frozen=True)
class BlobTrigger:
    container: str
    path_pattern: str  # the part after "<container>/", e.g. "{name}" or "in/{name}.csv"
    connection: str
    # "EventGrid" or the host's default "LogsAndContainerScan": delivered alike here (polled).
    source: str = "LogsAndContainerScan"

    @property
    def list_prefix(self) -> str:
        """The literal start of the pattern: only blobs under it can match."""
        return self.path_pattern.split("{", 1)[0]

    def matches(self, blob_name: str) -> bool:
        return _path_regex(self.path_pattern).fullmatch(blob_name) is not None


@dataclass(frozen=True)
class QueueTrigger:
    queue_name: str
    connection: str


@dataclass(frozen=True)
class TimerTrigger:
    schedule: str
    run_on_startup: bool
    use_monitor: bool

    def next_occurrence(self, after: dt.datetime) -> dt.datetime:
        """The first scheduled instant strictly after ``after`` (UTC, NCRONTAB seconds first)."""
        after = after.astimezone(dt.UTC)
        return croniter(self.schedule, after, second_at_beginning=True).get_next(dt.datetime).astimezone(dt.UTC)


Trigger = BlobTrigger | QueueTrigger | TimerTrigger


@dataclass(frozen=True)
class RegisteredFunction:
    """One function of the app: its name, trigger and the Python callable the worker would call."""

    name: str
    arg_name: str
    trigger: Trigger
    user_function: Callable[..., Any]

    @property
    def host_id(self) -> str:
        """How the host names a function in its storage bookkeeping."""
        return f"Host.Functions.{self.name}"


def _path_regex(pattern: str) -> re.Pattern[str]:
    """``in/{name}.csv`` → a regex where each ``{x}`` matches any text (including '/')."""
    parts = re.split(r"(\{[^}]+\})", pattern)
    return re.compile("".join(".+" if p.startswith("{") else re.escape(p) for p in parts), re.DOTALL)


# get_functions() validates and indexes the app, and a second call on the same app fails
# ("does not have a unique function name"), so each app's list is read once and kept.
_INDEXED_APPS: weakref.WeakKeyDictionary[func.FunctionApp, list[Any]] = weakref.WeakKeyDictionary()


def _indexed_functions(app: func.FunctionApp) -> list[Any]:
    if app not in _INDEXED_APPS:
        _INDEXED_APPS[app] = list(app.get_functions())
    return _INDEXED_APPS[app]


def read_functions(app: func.FunctionApp, environ: Mapping[str, str]) -> list[RegisteredFunction]:
    """The app's registered functions with their triggers, %SETTING% references resolved."""
    functions = []
    for fn in _indexed_functions(app):
        trigger_binding = fn.get_trigger()
        binding = trigger_binding.get_dict_repr()
        name = fn.get_function_name()
        functions.append(
            RegisteredFunction(
                name=name,
                arg_name=str(binding["name"]),
                trigger=_trigger_from_binding(name, binding, environ),
                user_function=fn.get_user_function(),
            )
        )
    return functions


def _trigger_from_binding(function_name: str, binding: Mapping[str, Any], environ: Mapping[str, str]) -> Trigger:
    kind = str(binding["type"])
    if kind == "blobTrigger":
        path = resolve_setting_references(str(binding["path"]), environ)
        container, _, pattern = path.partition("/")
        if not container or not pattern:
            raise ConfigurationError(f"{function_name}: blob trigger path {path!r} is not '<container>/<pattern>'")
        return BlobTrigger(
            container,
            pattern,
            str(binding.get("connection") or "AzureWebJobsStorage"),
            str(binding.get("source") or "LogsAndContainerScan"),
        )
    if kind == "queueTrigger":
        queue_name = resolve_setting_references(str(binding["queueName"]), environ)
        return QueueTrigger(queue_name, str(binding.get("connection") or "AzureWebJobsStorage"))
    if kind == "timerTrigger":
        schedule = resolve_setting_references(str(binding["schedule"]), environ)
        if len(schedule.split()) != 6 or not croniter.is_valid(schedule, second_at_beginning=True):
            raise ConfigurationError(f"{function_name}: schedule {schedule!r} is not six-field NCRONTAB")
        return TimerTrigger(schedule, bool(binding.get("runOnStartup", False)), bool(binding.get("useMonitor", True)))
    raise ConfigurationError(f"{function_name}: trigger type {kind!r} is not supported by the local runner")


# ======================================================================================
# Invocations
# ======================================================================================
@dataclass(frozen=True)
class Invocation:
    """What happened when one function was called once."""

    function: str
    trigger: dict[str, Any]
    succeeded: bool
    duration_ms: int
    error: BaseException | None = None

    @property
    def outcome(self) -> str:
        return "succeeded" if self.succeeded else "failed"


def invoke(function: RegisteredFunction, argument: Any, trigger_data: dict[str, Any], reason: str) -> Invocation:
    """Call the user function as the worker would; an exception is a failed invocation, not a crash."""
    invocation_id = str(uuid.uuid4())
    started = time.monotonic()
    error: Exception | None = None
    with log_context(invocation_id=invocation_id, function=function.name):
        log.info(
            "Executing 'Functions.%s' (Reason='%s', Id=%s)",
            function.name,
            reason,
            invocation_id,
            extra={"fields": {"trigger": trigger_data}},
        )
        try:
            function.user_function(**{function.arg_name: argument})
        except Exception as exc:
            error = exc
        duration_ms = int((time.monotonic() - started) * 1000)
        result = Invocation(function.name, trigger_data, error is None, duration_ms, error)
        fields = {"trigger": trigger_data, "outcome": result.outcome, "duration_ms": duration_ms}
        if error is None:
            log.info(
                "Executed 'Functions.%s' (Succeeded, Id=%s, Duration=%dms)",
                function.name,
                invocation_id,
                duration_ms,
                extra={"fields": fields},
            )
        else:
            fields["error_type"] = type(error).__name__
            log.error(
                "Executed 'Functions.%s' (Failed, Id=%s, Duration=%dms): %s: %s",
                function.name,
                invocation_id,
                duration_ms,
                type(error).__name__,
                error,
                exc_info=error,
                extra={"fields": fields},
            )
    return result


Invoke = Callable[[RegisteredFunction, Any, dict[str, Any], str], Invocation]


# ======================================================================================
# Queue message encoding (host.json extensions.queues.messageEncoding)
# ======================================================================================
# The producer's codec (shared/adapters/queue_store.py) is the one the runner decodes with, so
# the two can never disagree; UndecodableMessage is its MalformedMessage.
UndecodableMessage = MalformedMessage


def decode_message(content: str, encoding: str) -> bytes:
    return decode_body(content, encoding)


def encode_message(body: bytes, encoding: str) -> str:
    return encode_text(body.decode("utf-8"), encoding)


# ======================================================================================
# Blob trigger
# ======================================================================================
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


# ======================================================================================
# Queue trigger
# ======================================================================================
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


# ======================================================================================
# Timer trigger
# ======================================================================================
class TimerScheduler:
    """Fires the function at each NCRONTAB occurrence (UTC).

    With useMonitor the schedule status (Last/Next/LastUpdated) is kept in
    ``azure-webjobs-hosts/timers/<host>/<function>/status`` like the host's, so an occurrence
    missed while the runner was stopped fires once at start with ``past_due=True``.
    """

    def __init__(
        self,
        function: RegisteredFunction,
        trigger: TimerTrigger,
        host_blobs: BlobServiceClient,
        host_id: str,
        clock: Clock,
    ) -> None:
        self.function = function
        self.trigger = trigger
        self._clock = clock
        self._status_blob = host_blobs.get_blob_client(HOSTS_CONTAINER, f"timers/{host_id}/{function.host_id}/status")
        self._hosts = host_blobs.get_container_client(HOSTS_CONTAINER)
        self._next_due: dt.datetime | None = None
        self._past_due_on_start = False
        self._start()  # the host starts each timer listener with the host, not at its first poll

    @property
    def next_due(self) -> dt.datetime:
        assert self._next_due is not None
        return self._next_due

    def _start(self) -> None:
        """Pick up the schedule status, as the host does when it starts a timer listener."""
        now = self._clock()
        status = self._read_status() if self.trigger.use_monitor else {}
        recorded_next = _parse_instant(status.get("Next"))
        if recorded_next is not None and recorded_next <= now:
            self._past_due_on_start = True
            self._next_due = recorded_next
        elif self.trigger.run_on_startup:
            self._next_due = now
        else:
            self._next_due = recorded_next or self.trigger.next_occurrence(now)

    def poll(self, invoke_function: Invoke) -> list[Invocation]:
        now = self._clock()
        assert self._next_due is not None
        if now < self._next_due:
            return []
        scheduled, past_due = self._next_due, self._past_due_on_start
        self._past_due_on_start = False
        # A timer is not retried: the next occurrence is computed whatever the outcome.
        self._next_due = self.trigger.next_occurrence(now)
        result = self._fire(invoke_function, scheduled, past_due, "Timer fired")
        self._write_status(last=scheduled)
        return [result]

    def fire_now(self, invoke_function: Invoke, past_due: bool = False) -> Invocation:
        """Run once now, outside the schedule (what `func`'s admin "run" endpoint does)."""
        return self._fire(invoke_function, self._clock(), past_due, "Manually fired")

    def _fire(self, invoke_function: Invoke, scheduled: dt.datetime, past_due: bool, reason: str) -> Invocation:
        status = self._status(last=scheduled)
        request = TimerRequest(past_due=past_due, schedule_status=status, schedule={"AdjustForDST": False})
        trigger_data = {"schedule": self.trigger.schedule, "scheduled_for": scheduled.isoformat(), "past_due": past_due}
        return invoke_function(self.function, request, trigger_data, reason)

    def _status(self, last: dt.datetime) -> dict[str, str]:
        return {
            "Last": last.isoformat(),
            "Next": self.next_due.isoformat(),
            "LastUpdated": self._clock().isoformat(),
        }

    def _read_status(self) -> dict[str, str]:
        try:
            return dict(json.loads(self._status_blob.download_blob().readall()))
        except (ResourceNotFoundError, ValueError):
            return {}

    def _write_status(self, last: dt.datetime) -> None:
        if not self.trigger.use_monitor:
            return
        with contextlib.suppress(ResourceExistsError):
            self._hosts.create_container()
        self._status_blob.upload_blob(json.dumps(self._status(last)).encode("utf-8"), overwrite=True)


def _parse_instant(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


# ======================================================================================
# The runner
# ======================================================================================
@dataclass(frozen=True)
class DrainResult:
    invocations: list[Invocation]
    idle: bool  # False: the timeout passed (or a stop_on error was seen) with work left
    elapsed_s: float

    @property
    def failures(self) -> list[Invocation]:
        return [i for i in self.invocations if not i.succeeded]


@dataclass
class Runner:
    """Drives every registered function from storage. Build it with ``Runner.from_app``."""

    functions: list[RegisteredFunction]
    blob_pollers: list[BlobTriggerPoller]
    queue_pollers: list[QueueTriggerPoller]
    timers: list[TimerScheduler]
    clock: Clock = utc_now
    # At-least-once drill: every successful delivery is immediately delivered once more, as the
    # host may do (a lost receipt, a message whose delete did not reach storage, a timer tick
    # run by two instances). Functions must leave the same state either way.
    deliver_twice: bool = False
    history: list[Invocation] = field(default_factory=list)

    @classmethod
    def from_app(
        cls,
        app: func.FunctionApp,
        values: Mapping[str, str],
        *,
        environ: MutableMapping[str, str] | None = None,
        host_config: QueueHostConfig | None = None,
        clock: Clock = utc_now,
        host_id: str | None = None,
        deliver_twice: bool = False,
    ) -> Runner:
        """Export ``values`` into ``environ`` (default os.environ; existing variables win), read the
        app's bindings and connect each trigger to its storage. ``host_config`` defaults to
        host.json's queue settings; tests pass a shorter visibility timeout."""
        env: MutableMapping[str, str] = os.environ if environ is None else environ
        export_values(values, env)
        config = host_config or queue_config(HOST_JSON)
        functions = read_functions(app, env)
        host_id = host_id or env.get("AzureFunctionsWebHost__hostid") or DEFAULT_HOST_ID
        host_storage = _host_storage(functions, env)
        blob_pollers, queue_pollers, timers = [], [], []
        for function in functions:
            trigger = function.trigger
            if isinstance(trigger, BlobTrigger):
                connection = resolve_connection(trigger.connection, env)
                blob_pollers.append(
                    BlobTriggerPoller(
                        function,
                        trigger,
                        connection.blob_service(),
                        host_storage.blob_service(),
                        connection.queue_service().get_queue_client(BLOB_POISON_QUEUE),
                        config,
                        host_id,
                        clock,
                    )
                )
            elif isinstance(trigger, QueueTrigger):
                queue_service = resolve_connection(trigger.connection, env).queue_service()
                queue_pollers.append(QueueTriggerPoller(function, trigger, queue_service, config))
            else:
                timers.append(TimerScheduler(function, trigger, host_storage.blob_service(), host_id, clock))
        return cls(functions, blob_pollers, queue_pollers, timers, clock, deliver_twice)

    # ---- driving ---------------------------------------------------------------------------
    def _invoke(self, function: RegisteredFunction, argument: Any, trigger: dict[str, Any], reason: str) -> Invocation:
        result = invoke(function, argument, trigger, reason)
        self.history.append(result)
        if self.deliver_twice and result.succeeded:
            result = invoke(function, argument, {**trigger, "duplicate": True}, f"{reason} (duplicate delivery)")
            self.history.append(result)
        return result

    def poll_once(self) -> list[Invocation]:
        """One pass over every trigger: blobs first (they queue builds), then timers, then queues."""
        results: list[Invocation] = []
        for poller in self.blob_pollers:
            results += poller.poll(self._invoke)
        for timer in self.timers:
            results += timer.poll(self._invoke)
        for queue in self.queue_pollers:
            results += queue.poll(self._invoke)
        return results

    def has_pending(self) -> bool:
        """Work that exists but is not deliverable yet (retries waiting out a visibility timeout)."""
        return any(p.has_pending() for p in self.blob_pollers) or any(q.has_pending() for q in self.queue_pollers)

    def drain(
        self,
        timeout_s: float = 120.0,
        poll_interval_s: float = 0.2,
        stop_on: tuple[type[BaseException], ...] = (),
    ) -> DrainResult:
        """Poll until no trigger has work (nothing delivered and nothing pending), or the timeout.

        ``stop_on``: stop early when an invocation fails with one of these error types (the
        local run uses it to stop at code that is not there yet instead of retrying it)."""
        started = time.monotonic()
        results: list[Invocation] = []
        while True:
            batch = self.poll_once()
            results += batch
            if stop_on and any(r.error is not None and isinstance(r.error, stop_on) for r in batch):
                return DrainResult(results, idle=False, elapsed_s=time.monotonic() - started)
            if not batch and not self.has_pending():
                return DrainResult(results, idle=True, elapsed_s=time.monotonic() - started)
            if time.monotonic() - started > timeout_s:
                return DrainResult(results, idle=False, elapsed_s=time.monotonic() - started)
            if not batch:
                time.sleep(poll_interval_s)

    def fire_timer(self, name: str | None = None, past_due: bool = False) -> list[Invocation]:
        """Run timer function ``name`` (every timer function when None) once, now."""
        timers = [t for t in self.timers if name is None or t.function.name == name]
        if name is not None and not timers:
            known = ", ".join(t.function.name for t in self.timers) or "none"
            raise ConfigurationError(f"no timer-triggered function named {name!r} (timer functions: {known})")
        return [timer.fire_now(self._invoke, past_due=past_due) for timer in timers]

    def run_forever(self, stop: threading.Event, max_interval_s: float = 2.0) -> None:
        """Poll until ``stop`` is set: immediately again after work, else after a short pause."""
        while not stop.is_set():
            if not self.poll_once():
                stop.wait(min(max_interval_s, self._seconds_until_next_timer()))

    def _seconds_until_next_timer(self) -> float:
        if not self.timers:
            return float("inf")
        soonest = min(t.next_due for t in self.timers)
        return max(0.05, (soonest - self.clock()).total_seconds())

    def describe(self) -> list[str]:
        """One line per function: what it listens to."""
        lines = []
        for fn in self.functions:
            t = fn.trigger
            if isinstance(t, BlobTrigger):
                lines.append(
                    f"{fn.name}: blobTrigger {t.container}/{t.path_pattern} (connection {t.connection}, "
                    f"source {t.source}{', polled locally' if t.source == 'EventGrid' else ''})"
                )
            elif isinstance(t, QueueTrigger):
                lines.append(f"{fn.name}: queueTrigger {t.queue_name} (connection {t.connection})")
            else:
                lines.append(f"{fn.name}: timerTrigger '{t.schedule}' UTC")
        return lines


def _host_storage(functions: Iterable[RegisteredFunction], environ: Mapping[str, str]) -> StorageConnection:
    """The host keeps receipts and timer status in AzureWebJobsStorage; without it (some local
    setups) we fall back to the first trigger's own connection rather than refuse to start."""
    with contextlib.suppress(ConfigurationError):
        return resolve_connection("AzureWebJobsStorage", environ)
    for function in functions:
        if isinstance(function.trigger, BlobTrigger | QueueTrigger):
            return resolve_connection(function.trigger.connection, environ)
    raise ConfigurationError("setting AzureWebJobsStorage: not set (the runner keeps receipts and timer status there)")


# ======================================================================================
# CLI
# ======================================================================================
def load_app(spec: str) -> func.FunctionApp:
    """``module:attribute`` → the FunctionApp object (default ``function_app:app``)."""
    module_name, _, attribute = spec.partition(":")
    app = getattr(importlib.import_module(module_name), attribute or "app")
    if not isinstance(app, func.FunctionApp):
        raise ConfigurationError(f"{spec} is not an azure.functions.FunctionApp")
    return app


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C so `finally` blocks (and the caller's cleanup) run."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@click.command(
    help=(
        "Local trigger runner: drives the functions registered in function_app.py from Azurite "
        "(blob arrivals, queue messages per host.json, the NCRONTAB timer). It is the local "
        "stand-in for Azure Functions Core Tools on machines without `func`; it is not a "
        "replacement for the Functions host in Azure."
    )
)
@click.option(
    "--settings",
    "settings_path",
    default=None,
    type=click.Path(dir_okay=False),
    help="local.settings.json to export; a path given must exist. Default: ./local.settings.json if it "
    "exists, else only the environment.",
)
@click.option("--app", "app_spec", default="function_app:app", show_default=True, help="module:attribute")
@click.option("--once", "mode", flag_value="once", help="Process until no trigger has work, then exit.")
@click.option("--forever", "mode", flag_value="forever", default=True, help="Keep polling until Ctrl-C (default).")
@click.option(
    "--fire-timer",
    "fire_timer",
    is_flag=False,
    flag_value="*",
    default=None,
    metavar="[NAME]",
    help="Run the timer function NAME (every timer function without NAME) once, now, before polling.",
)
@click.option("--timeout", default=600.0, show_default=True, help="Seconds --once waits for work to finish.")
@click.option(
    "--apply-schema/--no-apply-schema",
    default=True,
    show_default=True,
    help="Apply pending warehouse migrations first, as the deploy step does in Azure.",
)
def main(
    settings_path: str | None, app_spec: str, mode: str, fire_timer: str | None, timeout: float, apply_schema: bool
) -> None:
    """Errors reach the operator as one line naming the setting and the cause (exit 1); with
    ``--once`` any failed invocation, a fired timer included, also exits 1."""
    values = read_local_settings(settings_path)
    # Exported before function_app is imported, as Core Tools starts the worker with them set.
    export_values(values, os.environ)
    configure_logging(os.environ.get("LOG_LEVEL", "INFO"))
    with sigterm_as_interrupt():
        try:
            with storage_errors("local runner"):
                if apply_schema:
                    from pipeline_tools.schema_bootstrap import apply_migrations

                    # What the deploy step does in Azure: the functions only check the schema version.
                    for name in apply_migrations(Settings.from_environment()):
                        click.echo(f"  applied {name}", err=True)
                runner = Runner.from_app(load_app(app_spec), values)
                for line in runner.describe():
                    click.echo(f"  {line}", err=True)
                fired = runner.fire_timer(None if fire_timer == "*" else fire_timer) if fire_timer is not None else []
                if mode == "forever":
                    runner.run_forever(threading.Event())
                    return
                result = runner.drain(timeout_s=timeout)
        except KeyboardInterrupt:
            click.echo("stopped", err=True)
            return
        except PipelineError as exc:
            raise click.ClickException(redact(" ".join(f"{type(exc).__name__}: {exc}".split()))) from None
        except Exception as exc:
            traceback.print_exc()
            raise click.ClickException(f"unexpected error: {type(exc).__name__} (traceback above)") from None
    failures = [i for i in fired if not i.succeeded] + result.failures
    click.echo(
        f"{len(fired) + len(result.invocations)} invocation(s), {len(failures)} failed, "
        f"{'idle' if result.idle else 'work left after the timeout'}",
        err=True,
    )
    if failures or not result.idle:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
