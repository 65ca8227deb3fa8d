"""Backfill orchestration (shared.services.backfill) with fakes: chunks, resuming after an
interruption, and the progress it reports."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pytest

from shared.rules.backfill_plan import BackfillDateState
from shared.rules.date_ranges import DateRange
from shared.services.backfill import run_backfill
from shared.services.progress import OperationStopped

START = dt.date(2025, 1, 1)


def days(n: int, start: dt.date = START) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range(n)]


class FakePipeline:
    """Remembers which days were pulled and which were built, like watermarks and date_builds."""

    def __init__(self, fail_pull_on: dt.date | None = None) -> None:
        self.pulled: set[dt.date] = set()
        self.built: set[dt.date] = set()
        self.pull_calls: list[dt.date] = []
        self.build_calls: list[DateRange] = []
        self.fail_pull_on = fail_pull_on

    def read_states(self, wanted: Sequence[dt.date]) -> dict[dt.date, BackfillDateState]:
        return {d: BackfillDateState(pulled=d in self.pulled, up_to_date=d in self.built) for d in wanted}

    def pull_day(self, day: dt.date) -> None:
        self.pull_calls.append(day)
        if day == self.fail_pull_on:
            raise ConnectionError("API went away")
        self.pulled.add(day)
        self.built.discard(day)  # a new usage version: the date's build is no longer current

    def build_range(self, chunk: DateRange) -> None:
        self.build_calls.append(chunk)
        self.built.update(chunk.days())


class RecordingProgress:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, int]] = []

    def start_phase(self, name: str, total: int) -> None:
        self.events.append(("start", name, total))

    def advance(self, dates: int, *, skipped: bool = False) -> None:
        self.events.append(("skip" if skipped else "done", "", dates))


def test_backfill_pulls_then_builds_in_chunks_of_the_given_size() -> None:
    pipeline = FakePipeline()
    rng = DateRange(START, START + dt.timedelta(days=69))

    result = run_backfill(
        rng,
        read_states=pipeline.read_states,
        pull_day=pipeline.pull_day,
        build_range=pipeline.build_range,
        chunk_days=31,
    )

    assert pipeline.pull_calls == rng.days()
    assert [len(c) for c in pipeline.build_calls] == [31, 31, 8]
    assert pipeline.built == set(rng.days())
    assert result.pulled == rng.days()


def test_interrupted_backfill_resumes_skipping_the_dates_already_done() -> None:
    rng = DateRange(START, START + dt.timedelta(days=9))
    pipeline = FakePipeline(fail_pull_on=START + dt.timedelta(days=4))

    with pytest.raises(OperationStopped, match=r"pull of 2025-01-05.*re-run `backfill --start 2025-01-01"):
        run_backfill(
            rng, read_states=pipeline.read_states, pull_day=pipeline.pull_day, build_range=pipeline.build_range
        )
    assert pipeline.pulled == set(days(4))
    assert pipeline.build_calls == []

    pipeline.fail_pull_on = None
    pipeline.pull_calls.clear()
    progress = RecordingProgress()
    run_backfill(
        rng,
        read_states=pipeline.read_states,
        pull_day=pipeline.pull_day,
        build_range=pipeline.build_range,
        progress=progress,
    )

    assert pipeline.pull_calls == days(6, START + dt.timedelta(days=4))
    assert pipeline.build_calls == [rng]
    assert progress.events == [
        ("start", "pull usage", 10),
        ("skip", "", 4),
        *[("done", "", 1)] * 6,
        ("start", "build", 10),
        ("skip", "", 0),
        ("done", "", 10),
    ]


def test_a_second_backfill_of_a_done_range_does_nothing() -> None:
    pipeline = FakePipeline()
    rng = DateRange(START, START + dt.timedelta(days=5))
    kwargs = {"read_states": pipeline.read_states, "pull_day": pipeline.pull_day, "build_range": pipeline.build_range}
    run_backfill(rng, **kwargs)  # type: ignore[arg-type]
    pipeline.pull_calls.clear()
    pipeline.build_calls.clear()

    result = run_backfill(rng, **kwargs)  # type: ignore[arg-type]

    assert pipeline.pull_calls == []
    assert pipeline.build_calls == []
    assert result.build_skipped_after_pull == rng.days()


def test_a_failed_build_chunk_stops_with_a_resume_hint_and_keeps_earlier_chunks() -> None:
    pipeline = FakePipeline()
    rng = DateRange(START, START + dt.timedelta(days=9))
    calls = 0

    def flaky_build(chunk: DateRange) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("warehouse down")
        pipeline.build_range(chunk)

    with pytest.raises(OperationStopped, match=r"build of 2025-01-06\.\.2025-01-10"):
        run_backfill(
            rng, read_states=pipeline.read_states, pull_day=pipeline.pull_day, build_range=flaky_build, chunk_days=5
        )
    assert pipeline.built == set(days(5))


class CheckedPipeline(FakePipeline):
    """Also remembers which built days had their checks run (a build runs them unless interrupted)."""

    def __init__(self) -> None:
        super().__init__()
        self.checked: set[dt.date] = set()
        self.check_calls: list[list[dt.date]] = []
        self.interrupt_checks_of: DateRange | None = None

    def read_states(self, wanted: Sequence[dt.date]) -> dict[dt.date, BackfillDateState]:
        return {
            d: BackfillDateState(pulled=d in self.pulled, up_to_date=d in self.built, checked=d in self.checked)
            for d in wanted
        }

    def build_range(self, chunk: DateRange) -> None:
        super().build_range(chunk)
        self.checked.difference_update(chunk.days())
        if chunk == self.interrupt_checks_of:
            raise KeyboardInterrupt  # Ctrl-C after the build committed, inside its checks
        self.checked.update(chunk.days())

    def check_days(self, wanted: Sequence[dt.date]) -> None:
        self.check_calls.append(list(wanted))
        self.checked.update(wanted)


def test_ctrl_c_between_a_build_and_its_checks_is_not_swallowed_and_the_resume_runs_the_checks() -> None:
    pipeline = CheckedPipeline()
    rng = DateRange(START, START + dt.timedelta(days=9))
    pipeline.interrupt_checks_of = DateRange(START + dt.timedelta(days=5), START + dt.timedelta(days=9))
    kwargs = {
        "read_states": pipeline.read_states,
        "pull_day": pipeline.pull_day,
        "build_range": pipeline.build_range,
        "check_days": pipeline.check_days,
        "chunk_days": 5,
    }

    with pytest.raises(KeyboardInterrupt):
        run_backfill(rng, **kwargs)  # type: ignore[arg-type]
    assert pipeline.built == set(rng.days()) and pipeline.checked == set(days(5))

    pipeline.interrupt_checks_of = None
    pipeline.build_calls.clear()
    result = run_backfill(rng, **kwargs)  # type: ignore[arg-type]

    assert pipeline.build_calls == [], "the builds are current: only their checks were missing"
    assert pipeline.check_calls == [days(5, START + dt.timedelta(days=5))]
    assert result.checked == days(5, START + dt.timedelta(days=5))
    assert pipeline.checked == set(rng.days())
