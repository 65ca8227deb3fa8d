"""Ranges of days (shared.rules.date_ranges): grouping, chunking, and what a range refuses."""

from __future__ import annotations

import datetime as dt

import pytest

from shared.rules.date_ranges import DateRange, contiguous_ranges

START = dt.date(2025, 1, 1)


def days(n: int, start: dt.date = START) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range(n)]


def test_contiguous_ranges_split_at_gaps_and_at_the_chunk_size() -> None:
    picked = [*days(5), *days(3, dt.date(2025, 1, 10))]

    assert contiguous_ranges(picked, max_days=2) == [
        DateRange(dt.date(2025, 1, 1), dt.date(2025, 1, 2)),
        DateRange(dt.date(2025, 1, 3), dt.date(2025, 1, 4)),
        DateRange(dt.date(2025, 1, 5), dt.date(2025, 1, 5)),
        DateRange(dt.date(2025, 1, 10), dt.date(2025, 1, 11)),
        DateRange(dt.date(2025, 1, 12), dt.date(2025, 1, 12)),
    ]


def test_without_a_limit_runs_are_cut_only_at_gaps() -> None:
    assert contiguous_ranges([*days(40), dt.date(2025, 3, 1)]) == [
        DateRange(START, START + dt.timedelta(days=39)),
        DateRange.single(dt.date(2025, 3, 1)),
    ]


def test_a_range_is_its_start_end_pair_and_its_length_is_its_days() -> None:
    start, end = rng = DateRange(START, START + dt.timedelta(days=2))
    assert (start, end) == rng == (START, START + dt.timedelta(days=2))
    assert len(rng) == 3 and rng.days() == days(3)
    assert str(rng) == "2025-01-01..2025-01-03" and str(DateRange.single(START)) == "2025-01-01"


def test_date_range_refuses_a_reversed_range() -> None:
    with pytest.raises(ValueError, match="after"):
        DateRange(dt.date(2025, 1, 2), dt.date(2025, 1, 1))
