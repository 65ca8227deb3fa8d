"""The readiness gate's pure decision: every arrival order (shared/rules/readiness.py)."""

from __future__ import annotations

import datetime as dt

from shared.rules.build_plan import InputVersions
from shared.rules.readiness import (
    PENDING_LEASE,
    BuildRecorded,
    DateState,
    Decision,
    Event,
    GraceCheck,
    InputMarked,
    SendConfirmed,
    decide,
    grace_candidate,
)

DAY = dt.date(2025, 3, 1)
T0 = dt.datetime(2025, 3, 2, 1, 0)
GRACE = dt.timedelta(hours=6)


def at(hours: float) -> dt.datetime:
    return T0 + dt.timedelta(hours=hours)


def crm(version: str = "c1") -> InputMarked:
    return InputMarked("crm", version, 100)


def usage(version: str = "u1") -> InputMarked:
    return InputMarked("usage", version, 90)


def run(
    events: list[tuple[Event, dt.datetime]], confirm: bool = True, affected: list[InputVersions] | None = None
) -> tuple[DateState, list[InputVersions]]:
    """Apply events in order, as the edge does (confirming each send); returns state and the
    build messages sent. Affected-only messages (they claim nothing) go to ``affected``."""
    state, sent = DateState(DAY), []
    for event, now in events:
        decision: Decision = decide(state, event, now, GRACE)
        state = decision.state
        if decision.send is not None and decision.affected_only:
            if affected is not None:
                affected.append(decision.send)
        elif decision.send is not None:
            sent.append(decision.send)
            if confirm:
                state = decide(state, SendConfirmed(decision.send), now, GRACE).state
    return state, sent


def test_crm_first_then_usage_queues_one_build() -> None:
    state, sent = run([(crm(), at(0)), (usage(), at(1))])
    assert sent == [InputVersions("c1", "u1")]
    assert state.build_status == "queued" and not state.pending


def test_usage_first_then_crm_within_grace_queues_one_build() -> None:
    _state, sent = run([(usage(), at(0)), (GraceCheck(), at(5)), (crm(), at(5.5))])
    assert sent == [InputVersions("c1", "u1")]


def test_crm_alone_never_queues_a_build() -> None:
    _, sent = run([(crm(), at(0)), (GraceCheck(), at(100))])
    assert sent == []


def test_duplicate_marks_queue_nothing_more() -> None:
    _, sent = run([(crm(), at(0)), (usage(), at(1)), (crm(), at(2)), (usage(), at(3)), (GraceCheck(), at(30))])
    assert sent == [InputVersions("c1", "u1")]


def test_duplicate_mark_reports_unchanged_and_keeps_the_first_arrival_time() -> None:
    first = decide(DateState(DAY), usage(), at(0), GRACE)
    again = decide(first.state, usage(), at(4), GRACE)
    assert first.changed and not again.changed
    assert again.state.usage is not None and again.state.usage.at == at(0)


def test_grace_period_passed_queues_a_stale_build_then_late_crm_queues_again() -> None:
    state, sent = run([(usage(), at(0)), (GraceCheck(), at(5.9)), (GraceCheck(), at(6)), (crm(), at(9))])
    assert sent == [InputVersions(None, "u1"), InputVersions("c1", "u1")]
    assert state.queued == InputVersions("c1", "u1")


def test_grace_is_counted_from_the_usage_arrival() -> None:
    _, sent = run([(usage(), at(0)), (GraceCheck(), at(5))])
    assert sent == []


def test_changed_usage_version_reopens_and_requeues_the_date() -> None:
    state, sent = run([(crm(), at(0)), (usage("u1"), at(1)), (usage("u2"), at(30))])
    assert sent == [InputVersions("c1", "u1"), InputVersions("c1", "u2")]
    assert state.versions() == InputVersions("c1", "u2")


def test_changed_crm_version_requeues_and_reverting_requeues_again() -> None:
    _, sent = run([(crm("c1"), at(0)), (usage(), at(1)), (crm("c2"), at(2)), (crm("c1"), at(3))])
    assert sent == [InputVersions("c1", "u1"), InputVersions("c2", "u1"), InputVersions("c1", "u1")]


def test_changed_crm_version_without_usage_reopens_without_queueing() -> None:
    state, sent = run([(crm("c1"), at(0)), (crm("c2"), at(1))])
    assert sent == []
    assert state.build_status == "waiting"


def test_a_new_crm_version_before_usage_queues_a_rebuild_of_the_days_it_changes_only() -> None:
    affected: list[InputVersions] = []
    state, sent = run([(crm("c1"), at(0)), (crm("c1"), at(1)), (crm("c2"), at(2)), (usage(), at(3))], affected=affected)
    # The snapshot is in force on built days after it: each new version rebuilds those (the
    # duplicate does not); the date itself is built once, when its usage arrives.
    assert affected == [InputVersions("c1", None), InputVersions("c2", None)]
    assert sent == [InputVersions("c2", "u1")]
    assert state.queued == InputVersions("c2", "u1")


def test_usage_within_the_crm_grace_period_rebuilds_the_days_whose_windows_hold_it() -> None:
    affected: list[InputVersions] = []
    state, sent = run(
        [(usage("u1"), at(0)), (usage("u2"), at(1)), (GraceCheck(), at(2)), (GraceCheck(), at(7))], affected=affected
    )
    assert affected == [InputVersions(None, "u1"), InputVersions(None, "u2")]
    assert sent == [InputVersions(None, "u2")]  # the stale build after the grace period, as before
    assert state.build_status == "queued"


def test_an_affected_only_decision_claims_nothing() -> None:
    decision = decide(DateState(DAY), crm("c1"), at(0), GRACE)
    assert decision.affected_only and decision.send == InputVersions("c1", None)
    assert decision.state.queued is None and not decision.state.pending
    assert decision.state.build_status == "waiting"


def test_unconfirmed_send_is_resent_by_a_redelivered_mark() -> None:
    state, _sent = run([(crm(), at(0)), (usage(), at(1))], confirm=False)
    assert state.pending
    again = decide(state, usage(), at(1.01), GRACE)
    assert again.send == InputVersions("c1", "u1")
    assert not again.changed


def test_unconfirmed_send_is_resent_by_the_sweep_only_after_the_lease() -> None:
    state, _ = run([(crm(), at(0)), (usage(), at(1))], confirm=False)
    assert decide(state, GraceCheck(), at(1) + PENDING_LEASE / 2, GRACE).send is None
    assert not grace_candidate(state, at(1) + PENDING_LEASE / 2, GRACE)
    assert grace_candidate(state, at(1) + PENDING_LEASE, GRACE)
    assert decide(state, GraceCheck(), at(1) + PENDING_LEASE, GRACE).send == InputVersions("c1", "u1")


def test_confirmation_of_an_older_pair_leaves_a_newer_pending_send() -> None:
    state, _ = run([(crm(), at(0)), (usage("u1"), at(1)), (usage("u2"), at(2))], confirm=False)
    after = decide(state, SendConfirmed(InputVersions("c1", "u1")), at(3), GRACE).state
    assert after.pending and after.queued == InputVersions("c1", "u2")


def test_build_recorded_marks_built_unless_a_newer_pair_is_queued() -> None:
    state, _ = run([(crm(), at(0)), (usage("u1"), at(1))])
    built = decide(state, BuildRecorded(InputVersions("c1", "u1"), "run1"), at(2), GRACE).state
    assert built.build_status == "built" and built.built_run_id == "run1"

    state, _ = run([(crm(), at(0)), (usage("u1"), at(1)), (usage("u2"), at(1.5))])
    older = decide(state, BuildRecorded(InputVersions("c1", "u1"), "run1"), at(2), GRACE).state
    assert older.build_status == "queued"


def test_sweep_skips_settled_dates() -> None:
    state, _ = run([(crm(), at(0)), (usage(), at(1))])
    assert not grace_candidate(state, at(50), GRACE)
    waiting, _ = run([(usage(), at(0))])
    assert not grace_candidate(waiting, at(1), GRACE)
    assert grace_candidate(waiting, at(6), GRACE)


def test_a_usage_correction_does_not_restart_the_crm_grace_period() -> None:
    """Look-back re-pulls correct usage daily; the wait for a missing CRM file still ends
    CRM_GRACE_HOURS after usage was first present, not after the latest correction."""
    _state, sent = run([(usage("u1"), at(0)), (usage("u2"), at(3)), (GraceCheck(), at(6))])
    assert sent == [InputVersions(None, "u2")]


def test_a_correction_after_a_stale_build_is_rebuilt_at_once() -> None:
    _state, sent = run([(usage("u1"), at(0)), (GraceCheck(), at(6)), (usage("u2"), at(24))])
    assert sent == [InputVersions(None, "u1"), InputVersions(None, "u2")]


def test_the_state_survives_its_table_entity_including_the_grace_clock() -> None:
    from shared.services.readiness import state_from_entity, state_to_entity

    state, _sent = run([(usage("u1"), at(0)), (usage("u2"), at(3)), (crm("c1"), at(4))])
    state = decide(state, BuildRecorded(InputVersions("c1", "u2"), "run-9"), at(5), GRACE).state

    assert state.usage_since == at(0)
    assert state_from_entity(state_to_entity(state, "run-9")) == state


def test_an_entity_written_before_the_grace_clock_field_counts_from_the_usage_time() -> None:
    from shared.services.readiness import state_from_entity, state_to_entity

    state, _sent = run([(usage("u1"), at(0))])
    entity = state_to_entity(state, "run-1")
    del entity["usage_since"]

    old = state_from_entity(entity)
    assert old.usage_since is None
    assert decide(old, GraceCheck(), at(6), GRACE).send == InputVersions(None, "u1")
