"""Validation and de-duplication of usage records (shared/rules/usage_records.py)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from shared.rules.usage_records import RecordScreen, UsageRecord, check_record

DAY = dt.date(2025, 3, 9)


def rec(company: str = "C000001", date: str = "2025-03-09", users: Any = 3, events: Any = 10) -> dict[str, Any]:
    return {"company_id": company, "date": date, "active_users": users, "events": events}


def test_a_valid_record_is_accepted() -> None:
    assert check_record(rec(), DAY) == UsageRecord("C000001", DAY, 3, 10)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ([1, 2], "not_an_object"),
        (rec(company=""), "missing_company_id"),
        (rec(company="   "), "missing_company_id"),
        ({k: v for k, v in rec().items() if k != "company_id"}, "missing_company_id"),
        (rec(company=42), "missing_company_id"),
        (rec(date="2025-03-08"), "wrong_date"),
        ({k: v for k, v in rec().items() if k != "date"}, "wrong_date"),
        (rec(users=-1), "negative_active_users"),
        (rec(events=-5), "negative_events"),
        (rec(users="5"), "non_integer_active_users"),
        (rec(users=True), "non_integer_active_users"),
        (rec(events=1.5), "non_integer_events"),
        (rec(events=2.0), "non_integer_events"),
        (rec(users=None), "missing_active_users"),
        ({k: v for k, v in rec().items() if k != "events"}, "missing_events"),
    ],
)
def test_invalid_records_are_rejected_with_their_reason(raw: Any, reason: str) -> None:
    assert check_record(raw, DAY) == reason


def test_identical_repeats_collapse_silently_and_are_counted() -> None:
    screen = RecordScreen(DAY)
    for raw in (rec(), rec(), rec("C000002")):
        screen.feed(raw)
    result = screen.result()
    assert [r.company_id for r in result.accepted] == ["C000001", "C000002"]
    assert (result.received, result.duplicates, result.conflicts, result.rejected) == (3, 1, 0, 0)


def test_conflicting_repeats_keep_the_largest_counts_whatever_the_order() -> None:
    forward, backward = RecordScreen(DAY), RecordScreen(DAY)
    for raw in (rec(users=3, events=10), rec(users=4, events=1)):
        forward.feed(raw)
    for raw in (rec(users=4, events=1), rec(users=3, events=10)):
        backward.feed(raw)
    assert forward.result().accepted == backward.result().accepted == [UsageRecord("C000001", DAY, 4, 1)]
    result = forward.result()
    assert result.conflicts == 1
    assert result.report()["conflict_samples"] == [{"company_id": "C000001", "kept": [4, 1], "dropped": [3, 10]}]


def test_ndjson_lines_are_parsed_and_broken_lines_rejected() -> None:
    screen = RecordScreen(DAY)
    screen.feed_line(json.dumps(rec()).encode())
    screen.feed_line(b"")
    screen.feed_line(b'{"company_id": "C0')
    result = screen.result()
    assert result.received == 2
    assert result.rejects_by_reason == {"invalid_json": 1}
    assert result.reject_samples[0].line == 2


def test_report_lists_reasons_and_samples() -> None:
    screen = RecordScreen(DAY)
    screen.feed(rec(users="7"))
    screen.feed(rec("C000002", date="2025-01-01"))
    report = screen.result().report()
    assert report["rejected"] == 2
    assert report["rejects_by_reason"] == {"non_integer_active_users": 1, "wrong_date": 1}
    assert report["reject_samples"][0]["reason"] == "non_integer_active_users"


def test_version_depends_on_content_not_on_order_or_repeats() -> None:
    a, b = RecordScreen(DAY), RecordScreen(DAY)
    for raw in (rec("C1"), rec("C2", users=1)):
        a.feed(raw)
    for raw in (rec("C2", users=1), rec("C1"), rec("C1")):
        b.feed(raw)
    assert a.result().version() == b.result().version()
    c = RecordScreen(DAY)
    for raw in (rec("C1"), rec("C2", users=2)):
        c.feed(raw)
    assert c.result().version() != a.result().version()


def test_version_differs_between_days_with_the_same_rows() -> None:
    empty_a, empty_b = RecordScreen(DAY).result(), RecordScreen(DAY + dt.timedelta(days=1)).result()
    assert empty_a.version() != empty_b.version()


def test_reject_share_is_rejected_over_received() -> None:
    screen = RecordScreen(DAY)
    screen.feed(rec())
    screen.feed(rec(users=-1))
    assert screen.result().reject_share == pytest.approx(0.5)
