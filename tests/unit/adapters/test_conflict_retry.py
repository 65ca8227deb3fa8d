"""The one retry policy of ETag read-decide-write loops: a lost race runs the body again."""

from __future__ import annotations

import pytest

from shared.adapters.table_state import retry_on_conflict
from shared.errors import ConcurrencyConflict


def test_a_lost_race_reruns_the_body_until_it_wins() -> None:
    tries: list[int] = []
    sleeps: list[float] = []

    def body() -> str:
        tries.append(1)
        if len(tries) < 3:
            raise ConcurrencyConflict("etag")
        return "written"

    assert retry_on_conflict(5, "state of 2025-03-01", sleep=sleeps.append)(body) == "written"
    assert len(tries) == 3
    assert len(sleeps) == 2 and all(0 <= s <= 0.02 * 2 for s in sleeps)


def test_after_the_last_attempt_the_conflict_names_what_was_contended() -> None:
    def body() -> None:
        raise ConcurrencyConflict("etag")

    with pytest.raises(ConcurrencyConflict, match="state of 2025-03-01: still contended after 3 attempts"):
        retry_on_conflict(3, "state of 2025-03-01", sleep=lambda _: None)(body)


def test_other_errors_are_not_retried() -> None:
    tries: list[int] = []

    def body() -> None:
        tries.append(1)
        raise ValueError("not a race")

    with pytest.raises(ValueError):
        retry_on_conflict(3, "x", sleep=lambda _: None)(body)
    assert tries == [1]
