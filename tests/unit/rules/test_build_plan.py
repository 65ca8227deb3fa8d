"""Which dates a build message rebuilds: shared/rules/build_plan.py."""

from __future__ import annotations

import datetime as dt

import pytest

from shared.errors import MalformedMessage
from shared.rules.build_plan import (
    MAX_REQUEST_DAYS,
    WINDOW_DAYS,
    InputVersions,
    add_crm_reach,
    checkpoint_refresh_from,
    contiguous_ranges,
    group_ranges,
    parse_build_request,
    plan_build,
    split_ranges,
)

V1 = InputVersions("crm1", "use1")
V2 = InputVersions("crm1", "use2")


def d(n: int) -> dt.date:
    return dt.date(2025, 3, 1) + dt.timedelta(days=n - 1)


# ---- parsing ------------------------------------------------------------------------------------
def test_dates_message_is_parsed_sorted_and_unique() -> None:
    request = parse_build_request({"dates": ["2025-03-02", "2025-03-01", "2025-03-02"], "reason": "late"})
    assert request.dates == (d(1), d(2))
    assert request.reason == "late"
    assert request.force is False


def test_range_message_expands_to_every_day_inclusive() -> None:
    request = parse_build_request({"start": "2025-03-01", "end": "2025-03-04", "force": True})
    assert request.dates == (d(1), d(2), d(3), d(4))
    assert request.force is True


def test_gate_message_with_versions_is_accepted() -> None:
    payload = {"dates": ["2025-03-01"], "reason": "both inputs present", "crm_version": "c", "usage_version": None}
    assert parse_build_request(payload).dates == (d(1),)


@pytest.mark.parametrize(
    ("payload", "complaint"),
    [
        ([], "JSON object"),
        ({}, "either"),
        ({"dates": ["2025-03-01"], "start": "2025-03-01"}, "either"),
        ({"dates": []}, "non-empty"),
        ({"dates": "2025-03-01"}, "non-empty"),
        ({"dates": ["2025-02-30"]}, "not a YYYY-MM-DD"),
        ({"dates": ["20250301"]}, "not a YYYY-MM-DD"),
        ({"dates": [20250301]}, "YYYY-MM-DD strings"),
        ({"start": "2025-03-05", "end": "2025-03-01"}, "after"),
        ({"start": "2025-03-05"}, '"end"'),
        ({"start": "2000-01-01", "end": "2025-01-01"}, "too large"),
        ({"dates": ["2025-03-01"], "force": "yes"}, "force"),
        ({"dates": ["2025-03-01"], "drop_table": 1}, "unknown keys"),
    ],
)
def test_malformed_messages_are_rejected_with_a_reason(payload: object, complaint: str) -> None:
    with pytest.raises(MalformedMessage, match=complaint):
        parse_build_request(payload)


def test_too_many_listed_dates_are_rejected() -> None:
    dates = [(dt.date(2000, 1, 1) + dt.timedelta(days=i)).isoformat() for i in range(MAX_REQUEST_DAYS + 1)]
    with pytest.raises(MalformedMessage, match="at most"):
        parse_build_request({"dates": dates})


# ---- planning -----------------------------------------------------------------------------------
def test_never_built_date_is_built() -> None:
    plan = plan_build([d(5)], {d(5): V1}, {})
    assert plan.changed == (d(5),)
    assert plan.ranges == ((d(5), d(5)),)


def test_unchanged_versions_skip_the_build() -> None:
    plan = plan_build([d(5)], {d(5): V1}, {d(5): V1})
    assert plan.targets == ()
    assert plan.unchanged == (d(5),)
    assert plan.ranges == ()


def test_force_rebuilds_unchanged_dates() -> None:
    plan = plan_build([d(5)], {d(5): V1}, {d(5): V1}, force=True)
    assert plan.changed == (d(5),)


def test_changed_date_pulls_in_already_built_dates_of_its_window_only() -> None:
    assert WINDOW_DAYS == 28  # the 28-day columns: usage of D is in the windows of D..D+27
    built = {d(n): V1 for n in range(1, 40) if n != 8}  # day 8 never built
    current = {**{d(n): V1 for n in range(1, 40)}, d(3): V2}
    plan = plan_build([d(3)], current, built)

    assert plan.changed == (d(3),)
    assert plan.neighbours == tuple(d(n) for n in range(4, 31) if n != 8)  # D+1..D+27, built ones
    assert plan.ranges == ((d(3), d(7)), (d(9), d(30)))


def test_stale_crm_build_is_redone_when_the_crm_version_appears() -> None:
    built = {d(2): InputVersions(None, "use1")}
    plan = plan_build([d(2)], {d(2): InputVersions("crm2", "use1")}, built)
    assert plan.changed == (d(2),)


def test_date_without_state_that_was_built_is_not_rebuilt_unless_forced() -> None:
    built = {d(2): InputVersions()}
    assert plan_build([d(2)], {}, built).targets == ()
    assert plan_build([d(2)], {}, built, force=True).targets == (d(2),)


def test_neighbours_overlapping_requested_dates_are_listed_once() -> None:
    built = {d(n): V1 for n in range(1, 40)}
    current = {d(n): V2 for n in range(1, 40)}
    plan = plan_build([d(1), d(2)], current, built)
    assert plan.changed == (d(1), d(2))
    assert plan.neighbours == tuple(d(n) for n in range(3, 30))
    assert plan.ranges == ((d(1), d(29)),)


def test_affected_only_dates_are_origins_not_targets() -> None:
    built = {d(n): V1 for n in range(3, 6)}
    current = {d(1): InputVersions("crm2", None)}
    plan = plan_build([d(1)], current, built, affected_only=True)
    assert plan.changed == (d(1),)
    assert plan.targets == (d(3), d(4), d(5))  # its built window neighbours, not day 1 itself


def test_crm_reach_adds_built_dates_once_and_regroups_ranges() -> None:
    plan = plan_build([d(2)], {d(2): V2}, {d(2): V1, d(3): V1})
    plan = add_crm_reach(plan, [d(3), d(40), d(41)])
    assert plan.crm_reach == (d(40), d(41))  # day 3 is a target already
    assert plan.targets == (d(2), d(3), d(40), d(41))
    assert plan.ranges == ((d(2), d(3)), (d(40), d(41)))


def test_affected_only_message_is_parsed_and_excludes_force() -> None:
    assert parse_build_request({"dates": ["2025-03-01"], "affected_only": True}).affected_only is True
    with pytest.raises(MalformedMessage, match="exclude"):
        parse_build_request({"dates": ["2025-03-01"], "affected_only": True, "force": True})
    with pytest.raises(MalformedMessage, match="affected_only"):
        parse_build_request({"dates": ["2025-03-01"], "affected_only": "yes"})


def test_contiguous_ranges_group_consecutive_days() -> None:
    assert contiguous_ranges([d(5), d(1), d(2), d(3), d(9), d(10)]) == [(d(1), d(3)), (d(5), d(5)), (d(9), d(10))]
    assert contiguous_ranges([]) == []


def test_split_ranges_cuts_each_range_into_pieces_of_at_most_max_days() -> None:
    assert split_ranges([(d(1), d(7)), (d(9), d(9))], 3) == [(d(1), d(3)), (d(4), d(6)), (d(7), d(7)), (d(9), d(9))]
    assert split_ranges([(d(1), d(6))], 3) == [(d(1), d(3)), (d(4), d(6))]
    assert split_ranges([(d(1), d(7))], None) == [(d(1), d(7))]
    with pytest.raises(ValueError):
        split_ranges([(d(1), d(2))], 0)


def test_group_ranges_packs_pieces_in_order_into_parts_of_at_most_max_days() -> None:
    assert group_ranges([(d(1), d(2)), (d(5), d(9))], 4) == [[(d(1), d(2))], [(d(5), d(8))], [(d(9), d(9))]]
    assert group_ranges([(d(1), d(1)), (d(3), d(4)), (d(9), d(9))], 4) == [[(d(1), d(1)), (d(3), d(4)), (d(9), d(9))]]
    assert group_ranges([(d(1), d(30))], None) == [[(d(1), d(30))]]


# ---- checkpoint refresh --------------------------------------------------------------------------
# Usage staged since January 2024, up to the build day d(10) (2025-03-10) unless a test says so.
PULLS = {"first_pull": dt.date(2024, 1, 1), "last_pull": d(10)}


def test_checkpoints_refresh_from_the_earliest_changed_usage_date() -> None:
    assert checkpoint_refresh_from(dt.date(2024, 2, 3), dt.date(2025, 3, 1), d(10), **PULLS) == dt.date(2024, 2, 3)


def test_checkpoints_are_left_alone_when_current_and_covering_the_build_month() -> None:
    assert checkpoint_refresh_from(None, dt.date(2025, 3, 1), d(10), **PULLS) is None
    assert checkpoint_refresh_from(None, dt.date(2025, 4, 1), d(10), **PULLS) is None


def test_checkpoints_are_extended_when_they_stop_before_the_build_month() -> None:
    assert checkpoint_refresh_from(None, dt.date(2025, 2, 1), d(10), **PULLS) == d(10)
    assert checkpoint_refresh_from(None, None, d(10), **PULLS) == d(10)


def test_a_change_in_the_month_of_the_newest_checkpoint_refreshes_nothing() -> None:
    # The daily case: yesterday's usage re-staged, the month's checkpoint exists and summarises
    # the months before it: the refresh would delete and compute no month.
    assert checkpoint_refresh_from(d(9), dt.date(2025, 3, 1), d(9), **PULLS) is None


def test_a_change_refreshes_when_a_later_checkpoint_or_month_depends_on_it() -> None:
    # A checkpoint after the changed month summarises it.
    assert checkpoint_refresh_from(dt.date(2025, 2, 27), dt.date(2025, 3, 1), d(10), **PULLS) == dt.date(2025, 2, 27)
    # Usage staged in a later month than the newest checkpoint needs that month's checkpoint.
    later = {"first_pull": dt.date(2024, 1, 1), "last_pull": dt.date(2025, 4, 2)}
    assert checkpoint_refresh_from(d(9), dt.date(2025, 3, 1), d(9), **later) == d(9)
    # So does a build in a later month.
    assert checkpoint_refresh_from(d(9), dt.date(2025, 3, 1), dt.date(2025, 4, 2), **PULLS) == d(9)


def test_without_checkpoints_a_refresh_runs_only_when_usage_precedes_the_last_month() -> None:
    # No checkpoint row yet and all usage in the build's month: no company was active before it.
    march = {"first_pull": dt.date(2025, 3, 1), "last_pull": d(10)}
    assert checkpoint_refresh_from(d(10), None, d(10), **march) is None
    assert checkpoint_refresh_from(None, None, d(10), **march) is None
    assert checkpoint_refresh_from(None, None, d(10), first_pull=None, last_pull=None) is None
    # Usage in February: March's checkpoint may hold companies active then.
    february = {"first_pull": dt.date(2025, 2, 28), "last_pull": d(10)}
    assert checkpoint_refresh_from(d(10), None, d(10), **february) == d(10)
    assert checkpoint_refresh_from(None, None, d(10), **february) == d(10)
