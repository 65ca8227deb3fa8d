"""The app's functions as the host sees them: settings, storage connections, triggers, invocation.

Registered functions are data (``app.get_functions()``), ``%SETTING%`` references and
``connection=`` names are resolved from the app settings as the host resolves them, and a
function is called the way the worker calls it: an exception is a failed invocation, not a crash.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import time
import uuid
import weakref
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

import azure.functions as func
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueServiceClient
from croniter import croniter

from shared.adapters.storage_common import BLOB_QUEUE_RETRY, default_credential
from shared.errors import ConfigurationError
from shared.logs import log_context

log = logging.getLogger(__name__)

# Names the Functions host uses for its own bookkeeping; kept so an operator who knows the host
# recognises them in Azurite (and so a later `func start` on the same storage agrees with us).
HOSTS_CONTAINER = "azure-webjobs-hosts"
DEFAULT_HOST_ID = "local-runner"


# ---- Settings, as Core Tools hands them to the worker (read by shared.settings.read_local_settings) ---
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


# ---- Storage connections, resolved from a binding's `connection=` the way the host does -------------
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


# ---- Bindings as data -------------------------------------------------------------------------------
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


# ---- Invocations ------------------------------------------------------------------------------------
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
