"""The timer trigger: six-field NCRONTAB in UTC, the schedule status kept in storage (useMonitor)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.functions.timer import TimerRequest
from azure.storage.blob import BlobServiceClient

from pipeline_tools.runner.bindings import HOSTS_CONTAINER, Invocation, Invoke, RegisteredFunction, TimerTrigger
from shared.clock import Clock


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
