"""Inclusive ranges of UTC days, and days grouped into them: pure, no I/O.

One notion of "a range of days" for the whole pipeline: the builder's plan groups its target
dates into ranges (one set-based SQL run each), operator commands chunk long ranges so each
piece is one bounded build.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import NamedTuple

# One build rebuilds at most this many consecutive days when an operator command chunks a range:
# set-based (one SQL run per range) yet small enough that a failure loses little work and
# progress moves visibly.
DEFAULT_CHUNK_DAYS = 31


class _Pair(NamedTuple):
    start: dt.date
    end: dt.date


class DateRange(_Pair):
    """Inclusive range of UTC days.

    A ``(start, end)`` pair: it unpacks and compares as one, which is how build plans hold
    their ranges. ``len()`` is its number of days.
    """

    __slots__ = ()

    def __new__(cls, start: dt.date, end: dt.date) -> DateRange:
        if start > end:
            raise ValueError(f"start {start} is after end {end}")
        return super().__new__(cls, start, end)

    @classmethod
    def single(cls, day: dt.date) -> DateRange:
        return cls(day, day)

    def days(self) -> list[dt.date]:
        return [self.start + dt.timedelta(days=i) for i in range(len(self))]

    def __len__(self) -> int:
        return (self.end - self.start).days + 1

    def __str__(self) -> str:
        return str(self.start) if self.start == self.end else f"{self.start}..{self.end}"


def contiguous_ranges(days: Iterable[dt.date], max_days: int | None = None) -> list[DateRange]:
    """Sorted, de-duplicated days grouped into runs of consecutive days, in order; a run longer
    than ``max_days`` (when given) is cut into pieces of at most ``max_days``."""
    if max_days is not None and max_days < 1:
        raise ValueError("max_days must be >= 1")
    ranges: list[DateRange] = []
    for day in sorted(set(days)):
        last = ranges[-1] if ranges else None
        if last and day == last.end + dt.timedelta(days=1) and (max_days is None or len(last) < max_days):
            ranges[-1] = DateRange(last.start, day)
        else:
            ranges.append(DateRange.single(day))
    return ranges
