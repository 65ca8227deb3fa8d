"""The runner process: every trigger polled in one loop, drained or run until stopped, and its CLI."""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import threading
import time
import traceback
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import azure.functions as func
import click

from pipeline_tools.runner.bindings import (
    DEFAULT_HOST_ID,
    BlobTrigger,
    Invocation,
    QueueTrigger,
    RegisteredFunction,
    StorageConnection,
    export_values,
    invoke,
    read_functions,
    resolve_connection,
)
from pipeline_tools.runner.blob_trigger import BlobTriggerPoller
from pipeline_tools.runner.queue_trigger import QueueTriggerPoller
from pipeline_tools.runner.timer_trigger import TimerScheduler
from shared.adapters.storage_common import storage_errors
from shared.clock import Clock, utc_now
from shared.errors import ConfigurationError, PipelineError
from shared.host_config import HOST_JSON, QueueHostConfig, queue_config
from shared.logs import configure_logging, redact
from shared.services.poison import BLOB_POISON_QUEUE
from shared.settings import Settings, read_local_settings


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


# ---- CLI --------------------------------------------------------------------------------------------
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
