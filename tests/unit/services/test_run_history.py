"""Run history: every step leaves a row with start, end, status, rows and (when it failed) its error."""

from __future__ import annotations

import datetime as dt

import pytest

from shared.adapters.warehouse.duckdb_engine import DuckDBWarehouse
from shared.errors import AuthenticationFailed, BuildError
from shared.services.run_history import recent_runs, record_run

D = dt.date(2025, 3, 10)


class Ticks:
    """A clock that moves one second per reading."""

    def __init__(self) -> None:
        self.now = dt.datetime(2025, 3, 11, 1, 0, 0)

    def __call__(self) -> dt.datetime:
        self.now += dt.timedelta(seconds=1)
        return self.now


def test_a_successful_step_records_rows_and_times(wh: DuckDBWarehouse) -> None:
    with record_run(wh, step="build", run_id="r1", run_date=D, trigger_name="build_requested", clock=Ticks()) as run:
        run.rows_in, run.rows_out = 10, 7
    (row,) = recent_runs(wh)
    assert (row["run_id"], row["step"], row["run_date"], row["status"]) == ("r1", "build", D, "succeeded")
    assert (row["rows_in"], row["rows_out"], row["trigger_name"]) == (10, 7, "build_requested")
    assert row["finished_at"] - row["started_at"] == dt.timedelta(seconds=1)
    assert row["error_type"] is None


def test_a_failed_step_is_visible_with_its_error_type_message_and_run_id(wh: DuckDBWarehouse) -> None:
    with pytest.raises(AuthenticationFailed), record_run(wh, step="usage", run_id="r2", run_date=D):
        raise AuthenticationFailed("usage API answered 401")
    (row,) = recent_runs(wh, run_date=D)
    assert (row["run_id"], row["status"], row["error_type"]) == ("r2", "failed", "AuthenticationFailed")
    assert row["error_message"] == "usage API answered 401"


def test_recording_a_failure_never_replaces_the_steps_own_error(wh: DuckDBWarehouse) -> None:
    class FinishFails(DuckDBWarehouse):
        def run(self, name: str, params: dict | None = None) -> list:  # type: ignore[override]
            if name == "ops/pipeline_runs__finish":
                raise BuildError("warehouse went away")
            return super().run(name, params)

    flaky = FinishFails(":memory:")
    flaky.apply_schema()
    with pytest.raises(AuthenticationFailed), record_run(flaky, step="usage", run_id="r3"):
        raise AuthenticationFailed("401")


def test_recent_runs_are_newest_first_filtered_by_date_and_limited(wh: DuckDBWarehouse) -> None:
    clock = Ticks()
    for index, day in enumerate([D, D + dt.timedelta(days=1), D, None]):
        with record_run(wh, step="build", run_id=f"r{index}", run_date=day, clock=clock):
            pass
    assert [r["run_id"] for r in recent_runs(wh)] == ["r3", "r2", "r1", "r0"]
    assert [r["run_id"] for r in recent_runs(wh, run_date=D)] == ["r2", "r0"]
    assert [r["run_id"] for r in recent_runs(wh, limit=2)] == ["r3", "r2"]
    with pytest.raises(ValueError):
        recent_runs(wh, limit=0)


def test_ctrl_c_marks_the_step_interrupted_and_is_raised_again(wh: DuckDBWarehouse) -> None:
    with pytest.raises(KeyboardInterrupt), record_run(wh, step="build", run_id="r4", run_date=D):
        raise KeyboardInterrupt

    (row,) = recent_runs(wh, status="interrupted")
    assert (row["run_id"], row["error_type"]) == ("r4", "KeyboardInterrupt")


def test_a_step_ended_rejected_keeps_its_own_reason(wh: DuckDBWarehouse) -> None:
    with record_run(wh, step="crm_staging", run_id="r5", run_date=D) as run:
        run.status, run.error_message = "rejected", "1 of 1 rows rejected: name longer than 400 characters"

    (row,) = recent_runs(wh, step="crm_staging")
    assert (row["status"], row["error_type"], row["error_message"]) == (
        "rejected",
        None,
        "1 of 1 rows rejected: name longer than 400 characters",
    )
    assert recent_runs(wh, step="build") == []
