"""Where a benchmark's time goes: wall and CPU seconds per SQL statement and per COMMIT.

Shared by the build and rollup benchmarks, which print these beside their totals. The timer
wraps one warehouse instance's statement and commit calls, so the code under test runs as is.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from shared.adapters.warehouse.duckdb_engine import DuckDBWarehouse
from shared.adapters.warehouse.sql_files import Statement


@contextmanager
def wall_cpu(spent: list[float]) -> Iterator[None]:
    """Add the block's wall and CPU seconds (this process, all threads) to ``spent`` = [wall, cpu]."""
    started, cpu_started = time.perf_counter(), time.process_time()
    try:
        yield
    finally:
        spent[0] += time.perf_counter() - started
        spent[1] += time.process_time() - cpu_started


def time_steps(wh: DuckDBWarehouse, step_of: Callable[[Statement], str]) -> dict[str, list[float]]:
    """[wall, CPU] seconds per step (``step_of(statement)``, and ``COMMIT``) of what ``wh`` runs
    from now on, summed in the returned dict as it runs (clear it to start a new measurement)."""
    spent: dict[str, list[float]] = {}
    execute, commit = wh._execute, wh._commit_transaction

    def timed(step: str, call: Callable[..., Any], *args: Any) -> Any:
        with wall_cpu(spent.setdefault(step, [0.0, 0.0])):
            return call(*args)

    wh._execute = lambda statement, params: timed(step_of(statement), execute, statement, params)  # type: ignore[method-assign]
    wh._commit_transaction = lambda: timed("COMMIT", commit)  # type: ignore[method-assign]
    return spent
