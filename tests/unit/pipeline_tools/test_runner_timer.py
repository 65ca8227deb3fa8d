"""Timer trigger: six-field NCRONTAB in UTC, one fire per occurrence, and fire-now."""

from __future__ import annotations

import datetime as dt
from typing import Any

import azure.functions as func

from pipeline_tools.runner import RegisteredFunction, TimerScheduler, TimerTrigger, invoke

UTC = dt.UTC


class _Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


class _NoStorage:
    """Timers without useMonitor never touch storage; any call would fail the test."""

    def get_blob_client(self, *args: Any, **kwargs: Any) -> None:
        return None

    def get_container_client(self, *args: Any, **kwargs: Any) -> None:
        return None


def _scheduler(schedule: str, clock: _Clock, run_on_startup: bool = False) -> tuple[TimerScheduler, list]:
    calls: list[func.TimerRequest] = []
    function = RegisteredFunction(
        "tick", "timer", TimerTrigger(schedule, run_on_startup, False), lambda timer: calls.append(timer)
    )
    trigger = function.trigger
    assert isinstance(trigger, TimerTrigger)
    return TimerScheduler(function, trigger, _NoStorage(), "test-host", clock), calls  # type: ignore[arg-type]


def test_next_occurrence_reads_seconds_first_and_is_utc() -> None:
    daily_at_one = TimerTrigger("0 0 1 * * *", False, True)
    assert daily_at_one.next_occurrence(dt.datetime(2025, 3, 4, 0, 59, 59, tzinfo=UTC)) == dt.datetime(
        2025, 3, 4, 1, 0, 0, tzinfo=UTC
    )
    assert daily_at_one.next_occurrence(dt.datetime(2025, 3, 4, 1, 0, 0, tzinfo=UTC)) == dt.datetime(
        2025, 3, 5, 1, 0, 0, tzinfo=UTC
    )
    every_ten_seconds = TimerTrigger("*/10 * * * * *", False, True)
    assert every_ten_seconds.next_occurrence(dt.datetime(2025, 3, 4, 12, 0, 3, tzinfo=UTC)) == dt.datetime(
        2025, 3, 4, 12, 0, 10, tzinfo=UTC
    )


def test_an_offset_clock_is_converted_to_utc_before_scheduling() -> None:
    plus_two = dt.timezone(dt.timedelta(hours=2))
    assert TimerTrigger("0 0 1 * * *", False, True).next_occurrence(
        dt.datetime(2025, 3, 4, 2, 30, tzinfo=plus_two)  # 00:30 UTC
    ) == dt.datetime(2025, 3, 4, 1, 0, tzinfo=UTC)


def test_timer_fires_once_per_occurrence_and_not_before() -> None:
    clock = _Clock(dt.datetime(2025, 3, 4, 0, 59, 0, tzinfo=UTC))
    scheduler, calls = _scheduler("0 0 1 * * *", clock)

    assert scheduler.poll(invoke) == []
    clock.now = dt.datetime(2025, 3, 4, 1, 0, 1, tzinfo=UTC)
    fired = scheduler.poll(invoke)
    assert [r.succeeded for r in fired] == [True]
    assert scheduler.poll(invoke) == []
    assert len(calls) == 1
    assert calls[0].past_due is False
    assert calls[0].schedule_status["Last"] == "2025-03-04T01:00:00+00:00"
    assert calls[0].schedule_status["Next"] == "2025-03-05T01:00:00+00:00"
    assert scheduler.next_due == dt.datetime(2025, 3, 5, 1, 0, tzinfo=UTC)


def test_fire_now_runs_outside_the_schedule_without_moving_it() -> None:
    clock = _Clock(dt.datetime(2025, 3, 4, 9, 0, 0, tzinfo=UTC))
    scheduler, calls = _scheduler("0 0 1 * * *", clock)

    result = scheduler.fire_now(invoke)

    assert result.succeeded
    assert len(calls) == 1 and isinstance(calls[0], func.TimerRequest)
    assert calls[0].past_due is False
    assert scheduler.next_due == dt.datetime(2025, 3, 5, 1, 0, tzinfo=UTC)
    assert scheduler.poll(invoke) == []


def test_run_on_startup_fires_at_the_first_poll() -> None:
    clock = _Clock(dt.datetime(2025, 3, 4, 9, 0, 0, tzinfo=UTC))
    scheduler, calls = _scheduler("0 0 1 * * *", clock, run_on_startup=True)
    assert len(scheduler.poll(invoke)) == 1
    assert scheduler.poll(invoke) == []
    assert len(calls) == 1


def test_a_failing_tick_is_not_retried_until_the_next_occurrence() -> None:
    clock = _Clock(dt.datetime(2025, 3, 4, 1, 0, 0, tzinfo=UTC))
    attempts = []

    def failing(timer: func.TimerRequest) -> None:
        attempts.append(timer)
        raise RuntimeError("upstream down")

    function = RegisteredFunction("tick", "timer", TimerTrigger("0 0 * * * *", False, False), failing)
    assert isinstance(function.trigger, TimerTrigger)
    scheduler = TimerScheduler(function, function.trigger, _NoStorage(), "h", clock)  # type: ignore[arg-type]
    assert scheduler.poll(invoke) == []  # started at 01:00:00: next hourly occurrence is 02:00
    clock.now = dt.datetime(2025, 3, 4, 2, 0, 0, tzinfo=UTC)
    [result] = scheduler.poll(invoke)
    assert not result.succeeded and isinstance(result.error, RuntimeError)
    assert scheduler.poll(invoke) == []
    clock.now = dt.datetime(2025, 3, 4, 3, 0, 0, tzinfo=UTC)
    assert len(scheduler.poll(invoke)) == 1
    assert len(attempts) == 2
