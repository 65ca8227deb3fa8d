"""The readiness gate against real Table Storage and Queue semantics (Azurite): ETags decide races."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from typing import Any

import pytest

from shared.adapters.queue_store import BuildQueue
from shared.adapters.table_state import StateTable
from shared.errors import UpstreamUnavailable
from shared.rules.build_plan import InputVersions
from shared.services.readiness import ReadinessGate
from shared.settings import Settings

pytestmark = pytest.mark.integration

DAY = dt.date(2025, 3, 1)
T0 = dt.datetime(2025, 3, 2, 1, 0)


def at(hours: float) -> dt.datetime:
    return T0 + dt.timedelta(hours=hours)


@pytest.fixture
def queue(storage_settings: Settings) -> BuildQueue:
    return BuildQueue.from_settings(storage_settings)


@pytest.fixture
def gate(storage_settings: Settings, queue: BuildQueue) -> ReadinessGate:
    return ReadinessGate(StateTable.from_settings(storage_settings), queue, crm_grace_hours=6)


def messages_for(queue: BuildQueue, day: dt.date) -> list[dict[str, Any]]:
    """The date's build messages (not the affected-only ones a CRM mark before usage sends)."""
    return [m for m in queue.peek_all() if m["dates"] == [day.isoformat()] and not m.get("affected_only")]


def test_crm_first_then_usage_queues_one_build(gate: ReadinessGate, queue: BuildQueue) -> None:
    first = gate.mark_input_present(DAY, "crm", "c1", 10, at(0), "run-crm")
    second = gate.mark_input_present(DAY, "usage", "u1", 9, at(1), "run-usage")

    assert (first.build_queued, second.build_queued) == (False, True)
    [affected, build] = queue.peek_all()
    # The snapshot is in force on later built days at once: those are rebuilt, not the date.
    assert affected["affected_only"] is True and (affected["crm_version"], affected["usage_version"]) == ("c1", None)
    assert build == {
        "dates": ["2025-03-01"],
        "reason": "both inputs present",
        "crm_version": "c1",
        "usage_version": "u1",
    }
    state = gate.state(DAY)
    assert state is not None and not state.pending and state.build_status == "queued"


def test_usage_first_then_crm_queues_one_build_and_duplicates_add_nothing(
    gate: ReadinessGate, queue: BuildQueue
) -> None:
    gate.mark_input_present(DAY, "usage", "u1", 9, at(0), "r1")
    assert gate.check_grace_periods(at(2), "timer") == []
    gate.mark_input_present(DAY, "crm", "c1", 10, at(3), "r2")
    duplicate = gate.mark_input_present(DAY, "crm", "c1", 10, at(4), "r3")
    gate.mark_input_present(DAY, "usage", "u1", 9, at(5), "r4")

    assert not duplicate.changed and not duplicate.build_queued
    assert len(messages_for(queue, DAY)) == 1


def test_late_crm_after_grace_period_requeues_the_date(gate: ReadinessGate, queue: BuildQueue) -> None:
    gate.mark_input_present(DAY, "usage", "u1", 9, at(0), "r1")
    assert gate.check_grace_periods(at(6), "timer") == [DAY]
    assert gate.check_grace_periods(at(7), "timer") == []  # queued once
    gate.mark_input_present(DAY, "crm", "c1", 10, at(8), "r2")

    assert [(m["crm_version"], m["usage_version"]) for m in messages_for(queue, DAY)] == [(None, "u1"), ("c1", "u1")]


def test_changed_usage_version_reopens_the_date(gate: ReadinessGate, queue: BuildQueue) -> None:
    gate.mark_input_present(DAY, "crm", "c1", 10, at(0), "r1")
    gate.mark_input_present(DAY, "usage", "u1", 9, at(1), "r2")
    changed = gate.mark_input_present(DAY, "usage", "u2", 11, at(30), "r3")

    assert changed.changed and changed.build_queued
    assert gate.input_versions([DAY, DAY + dt.timedelta(days=1)]) == {DAY: InputVersions("c1", "u2")}


def _race(workers: list[Callable[[], Any]]) -> list[Any]:
    """Start the workers at the same instant (a barrier) and collect what they return."""
    barrier = threading.Barrier(len(workers))
    results: list[Any] = [None] * len(workers)
    errors: list[BaseException] = []

    def run(i: int, work: Callable[[], Any]) -> None:
        barrier.wait()
        try:
            results[i] = work()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, w)) for i, w in enumerate(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return results


def test_simultaneous_marking_of_both_inputs_queues_exactly_one_message(gate: ReadinessGate, queue: BuildQueue) -> None:
    days = [DAY + dt.timedelta(days=i) for i in range(12)]
    for day in days:
        results = _race(
            [
                lambda day=day: gate.mark_input_present(day, "crm", "c1", 10, at(0), "instance-a"),
                lambda day=day: gate.mark_input_present(day, "usage", "u1", 9, at(0), "instance-b"),
            ]
        )
        assert sum(r.build_queued for r in results) == 1, day

    payloads = [m for m in queue.peek_all() if not m.get("affected_only")]
    assert sorted(m["dates"][0] for m in payloads) == [d.isoformat() for d in days]  # one per date


def test_many_instances_marking_the_same_inputs_queue_one_version_pair(gate: ReadinessGate, queue: BuildQueue) -> None:
    """Duplicated triggers racing too: the pair is claimed once; a re-send of the same pair is
    the only possible extra (a racer saw the claim before its confirmation), never another pair."""
    results = _race(
        [
            lambda: gate.mark_input_present(DAY, "crm", "c1", 10, at(0), "a"),
            lambda: gate.mark_input_present(DAY, "crm", "c1", 10, at(0), "b"),
            lambda: gate.mark_input_present(DAY, "usage", "u1", 9, at(0), "c"),
            lambda: gate.mark_input_present(DAY, "usage", "u1", 9, at(0), "d"),
        ]
    )
    messages = messages_for(queue, DAY)
    assert 1 <= len(messages) == sum(r.build_queued for r in results)
    assert {(m["crm_version"], m["usage_version"]) for m in messages} == {("c1", "u1")}
    state = gate.state(DAY)
    assert state is not None and not state.pending


class FlakyQueue:
    """A queue whose first build send fails, like an instance dying between claim and send
    (affected-only messages claim nothing: they are not what this fault is about)."""

    def __init__(self, inner: BuildQueue) -> None:
        self.inner = inner
        self.failures_left = 1

    def send(self, payload: dict[str, Any], visibility_timeout_s: int | None = None) -> str:
        if self.failures_left and not payload.get("affected_only"):
            self.failures_left -= 1
            raise UpstreamUnavailable("queue send failed")
        return self.inner.send(payload, visibility_timeout_s)


def test_send_lost_after_the_claim_is_resent_by_the_redelivered_trigger(
    storage_settings: Settings, queue: BuildQueue
) -> None:
    gate = ReadinessGate(StateTable.from_settings(storage_settings), FlakyQueue(queue), crm_grace_hours=6)
    gate.mark_input_present(DAY, "crm", "c1", 10, at(0), "r1")
    with pytest.raises(UpstreamUnavailable):
        gate.mark_input_present(DAY, "usage", "u1", 9, at(1), "r2")
    state = gate.state(DAY)
    assert state is not None and state.pending and messages_for(queue, DAY) == []

    redelivered = gate.mark_input_present(DAY, "usage", "u1", 9, at(1.1), "r2-retry")

    assert redelivered.build_queued
    assert len(messages_for(queue, DAY)) == 1
    state = gate.state(DAY)
    assert state is not None and not state.pending


def test_send_lost_without_redelivery_is_resent_by_the_sweep(storage_settings: Settings, queue: BuildQueue) -> None:
    gate = ReadinessGate(StateTable.from_settings(storage_settings), FlakyQueue(queue), crm_grace_hours=6)
    gate.mark_input_present(DAY, "crm", "c1", 10, at(0), "r1")
    with pytest.raises(UpstreamUnavailable):
        gate.mark_input_present(DAY, "usage", "u1", 9, at(1), "r2")

    assert gate.check_grace_periods(at(1.01), "timer") == []  # the sender may still be alive
    assert gate.check_grace_periods(at(2), "timer") == [DAY]
    assert len(messages_for(queue, DAY)) == 1


def test_a_lost_affected_only_send_does_not_fail_the_mark(storage_settings: Settings, queue: BuildQueue) -> None:
    class RefusingQueue:
        def send(self, payload: dict[str, Any], visibility_timeout_s: int | None = None) -> str:
            raise UpstreamUnavailable("queue send failed")

    gate = ReadinessGate(StateTable.from_settings(storage_settings), RefusingQueue(), crm_grace_hours=6)
    result = gate.mark_input_present(DAY, "crm", "c1", 10, at(0), "r1")

    assert result.changed and not result.build_queued
    state = gate.state(DAY)
    assert state is not None and state.crm is not None and state.crm.version == "c1"


def test_record_build_marks_the_date_built(gate: ReadinessGate) -> None:
    gate.mark_input_present(DAY, "crm", "c1", 10, at(0), "r1")
    gate.mark_input_present(DAY, "usage", "u1", 9, at(1), "r2")
    gate.record_build({DAY: InputVersions("c1", "u1"), DAY + dt.timedelta(days=9): InputVersions()}, "build-1", at(2))

    state = gate.state(DAY)
    assert state is not None and state.build_status == "built" and state.built_run_id == "build-1"
    assert gate.state(DAY + dt.timedelta(days=9)) is None  # no state is created for unknown dates
