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

The parts: ``bindings`` (settings, connections, the functions as data, one invocation),
``blob_trigger``, ``queue_trigger``, ``timer_trigger``, and ``process`` (the loop and the CLI).

    python -m pipeline_tools.runner --settings local.settings.json --once --fire-timer
"""

from __future__ import annotations

from pipeline_tools.runner.bindings import (
    DEFAULT_HOST_ID,
    HOSTS_CONTAINER,
    BlobTrigger,
    Invocation,
    Invoke,
    QueueTrigger,
    RegisteredFunction,
    StorageConnection,
    TimerTrigger,
    Trigger,
    export_values,
    invoke,
    read_functions,
    resolve_connection,
    resolve_setting_references,
)
from pipeline_tools.runner.blob_trigger import BlobTriggerPoller
from pipeline_tools.runner.process import DrainResult, Runner, load_app, main, sigterm_as_interrupt
from pipeline_tools.runner.queue_trigger import (
    QUEUE_LEASE,
    QueueTriggerPoller,
    UndecodableMessage,
    decode_message,
    encode_message,
)
from pipeline_tools.runner.timer_trigger import TimerScheduler
from shared.services.poison import BLOB_POISON_QUEUE

__all__ = [
    "BLOB_POISON_QUEUE",
    "DEFAULT_HOST_ID",
    "HOSTS_CONTAINER",
    "QUEUE_LEASE",
    "BlobTrigger",
    "BlobTriggerPoller",
    "DrainResult",
    "Invocation",
    "Invoke",
    "QueueTrigger",
    "QueueTriggerPoller",
    "RegisteredFunction",
    "Runner",
    "StorageConnection",
    "TimerScheduler",
    "TimerTrigger",
    "Trigger",
    "UndecodableMessage",
    "decode_message",
    "encode_message",
    "export_values",
    "invoke",
    "load_app",
    "main",
    "read_functions",
    "resolve_connection",
    "resolve_setting_references",
    "sigterm_as_interrupt",
]
