"""Benchmark: the events rollup's incremental refresh of one new day against a full GROUP BY.

SPEC section 6 at scale: 100,000,000 raw events over two years for 100,000 companies,
generated inside DuckDB (``range()``), once, into a file under /tmp that later runs reuse.
Each run copies that file and then, for each repeat, times:

1. the bare engine (the first ``--full-repeats`` repeats): one full ``GROUP BY event_date,
   company_id`` with ``COUNT(DISTINCT event_id)`` over the whole table (what recomputing the
   rollup from scratch costs);
2. after landing one more day of events through the production loader (``load_fact_events``,
   one call and commit per hourly load of that day: its own events, re-deliveries of ~1 % of
   them an hour later, events of two days before arriving late, and a few re-deliveries of
   events ten days old), the real incremental path, ``refresh_company_daily_events`` with the
   default look-back (``EVENTS_LOOKBACK_MINUTES``: the last hourly load before the watermark is
   recounted) (target: at least 100x faster than 1.);
3. the reconciliation check (sql/checks/events_reconciliation.sql) for the new day.

The refresh is timed right after the load, as it runs in production (the load, then the
refresh); the baseline runs before the load, not between the two. Its scan of the whole table
(5 GB) still passes through DuckDB's buffer pool (4 GB), so the refresh after it reads its
blocks again: each repeat line says so ("after the baseline's scan"), and says when the
refresh's COMMIT ran DuckDB's automatic checkpoint (the log passed ``checkpoint_threshold``,
16 MiB, writing what the loads and refreshes left since the last one). The hourly loads are
small commits that go through the log (~7 MB a day), so most checkpoints fall on one of them,
as in production; the loads' time and checkpoints are printed beside the refresh's.
The median covers every repeat whatever its state; the per-state figures are printed beside it.

After each refresh the rollup rows of every recomputed day are compared with a bare recount
of those days (de-duplicated by event_id, UTC days): a fast refresh that counted wrong fails
the run. Repeats go one day further each (successive daily refreshes); medians are printed, CPU
seconds of this process (DuckDB's threads included) beside wall seconds.
Peak RSS is this process's (generation runs in a child process of its own). The refresh's SQL
is translated to DuckDB's once before the first repeat, as a warm worker has it (the first
translation of the refresh file takes 0.1-0.4 s of sqlglot, once per process).

    PYTHONPATH=$PWD .venv/bin/python bench/events_rollup_bench.py                 # 100M events
    PYTHONPATH=$PWD .venv/bin/python bench/events_rollup_bench.py --events 2000000  # quick
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import groupby
from operator import itemgetter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.steps import time_steps, wall_cpu  # noqa: E402
from shared.adapters.warehouse.duckdb_engine import DuckDBWarehouse  # noqa: E402
from shared.adapters.warehouse.sql_files import load_statements  # noqa: E402
from shared.adapters.warehouse.translate import to_duckdb  # noqa: E402
from shared.services.events_rollup import load_fact_events, refresh_company_daily_events  # noqa: E402
from shared.services.quality import checks_named, evaluate  # noqa: E402
from shared.settings import Settings  # noqa: E402

START = dt.datetime(2024, 11, 29)  # two years of history end on 2026-11-28
HISTORY_DAYS = 730
LATE_DAYS = 2  # one event in 1,000 arrives this many days late
OLD_REDELIVERIES = 20  # re-deliveries of ten-day-old events in each new day's loads
OLD_DAYS = 10
REFRESH_SQL = (
    "agg/rollup_watermarks__loaded_through",
    "agg/fact_events__loaded_through",
    "agg/fact_events__touched_days",
    "agg/company_daily_events__refresh",
)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


# ---- the synthetic event stream -----------------------------------------------------------------
def event_rows_sql(events: int, companies: int) -> str:
    """DuckDB SQL for the raw events of sequence numbers [$lo, $hi): event number ``e`` happens at
    START + e * (two years / events), so a day holds events / 730 of them in time order.

    Every 100th row is a re-delivery of the row before it (same event_id, time and company,
    loaded an hour later); one event in 1,000 is loaded LATE_DAYS late; the others are loaded by
    the hourly load after their hour. Event ids are random-looking hex (UUID-like producers):
    their order says nothing about time, so no zonemap can prune by event_id.
    """
    span_us = HISTORY_DAYS * 86_400 * 1_000_000
    offset_us = f"CAST(CAST(e AS HUGEINT) * {span_us} // {events} AS BIGINT)"
    at = f"TIMESTAMP '{START.isoformat(sep=' ')}' + to_microseconds({offset_us})"
    return f"""
        WITH numbered AS (
            SELECT i, CASE WHEN i % 100 = 7 THEN i - 1 ELSE i END AS e
            FROM range($lo, $hi) AS t(i)
        ),
        timed AS (
            SELECT
                i,
                e,
                {at} AS event_ts
            FROM numbered
        )
        SELECT
            format('{{:016x}}', hash(e)) AS event_id,
            'C' || lpad(CAST(hash(e, 1) % {companies} + 1 AS VARCHAR), 6, '0') AS company_id,
            event_ts,
            CAST(event_ts AS DATE) AS event_date,
            date_trunc('hour', event_ts) + INTERVAL 1 HOUR
                + CASE WHEN i % 100 = 7 THEN INTERVAL 1 HOUR ELSE INTERVAL 0 HOUR END
                + CASE WHEN e % 1000 = 3 THEN INTERVAL {LATE_DAYS} DAY ELSE INTERVAL 0 DAY END AS loaded_at
        FROM timed
    """


def day_start_seq(day: dt.date, events: int) -> int:
    """The first event sequence number on ``day``."""
    return -(-(day - START.date()).days * events // HISTORY_DAYS)


def generate(path: Path, events: int, companies: int, memory_limit: str) -> None:
    """The history file: the schema, the raw events loaded up to the end of the last history day,
    the rollup of them (the bare GROUP BY) and the watermark: the state after yesterday's refresh."""
    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    wh = DuckDBWarehouse(partial, memory_limit=memory_limit)
    wh.apply_schema(START)
    con = wh._con  # direct DuckDB: generating 100M rows is not the pipeline's job
    cutoff = START + dt.timedelta(days=HISTORY_DAYS)
    started = time.perf_counter()
    con.execute(
        f"INSERT INTO agg.fact_events SELECT * FROM ({event_rows_sql(events, companies)}) WHERE loaded_at <= $cutoff",
        {"lo": 0, "hi": day_start_seq(cutoff.date(), events), "cutoff": cutoff},
    )
    print(f"generated {count_events(wh):,} events in {time.perf_counter() - started:.0f} s", flush=True)
    fill_rollup(wh, cutoff)
    con.execute("CHECKPOINT")
    wh.close()
    partial.rename(path)
    print(f"history file ready in {time.perf_counter() - started:.0f} s: {path}", flush=True)


def fill_rollup(wh: DuckDBWarehouse, cutoff: dt.datetime) -> None:
    """The rollup of the history (a bare GROUP BY: the generated copies share their day) and its
    watermark, a month per statement: the rollup's primary key index grows with each insert, and
    one 55M-row insert would need it all in memory at once, beside the aggregation."""
    con = wh._con
    month = dt.timedelta(days=30)
    first = START.date()
    while first < cutoff.date():
        con.execute(
            """
            INSERT INTO agg.company_daily_events
            SELECT event_date, company_id, COUNT(DISTINCT event_id), $cutoff, 'bench-history'
            FROM agg.fact_events WHERE event_date >= $first AND event_date < $last
            GROUP BY event_date, company_id
            ORDER BY event_date, company_id
            """,
            {"cutoff": cutoff, "first": first, "last": min(first + month, cutoff.date())},
        )
        first += month
    con.execute(
        "INSERT INTO agg.rollup_watermarks VALUES ('company_daily_events', $cutoff, $cutoff, 'bench-history')",
        {"cutoff": cutoff},
    )


def count_events(wh: DuckDBWarehouse) -> int:
    return int(wh.run_sql("SELECT COUNT(*) AS n FROM agg.fact_events")[0]["n"])


@dataclass
class Landed:
    """What landing one day's loads did: rows, loads, their wall/CPU seconds, and how many of
    their commits ran DuckDB's automatic checkpoint (the log started over)."""

    rows: int
    loads: int
    spent: list[float]  # [wall, CPU] seconds
    checkpoints: int


def land_day(wh: DuckDBWarehouse, day: dt.date, events: int, companies: int) -> Landed:
    """Append the loads of ``day`` (loaded_at in (day, day + 1]) as production does: each hourly
    load is one ``load_fact_events`` call (its own COPY and commit), plus one load of a few
    re-deliveries of ten-day-old events at noon. The rows are generated by DuckDB first (not
    timed). How the loads write decides what the refresh's COMMIT may have to checkpoint: a load
    of fewer rows than a row group (122,880) goes through DuckDB's write-ahead log (~7 MB for a
    day's 25 hourly loads), while one INSERT of the whole day writes its row groups straight to
    the file (~8 KB of log) — so the loads are landed as they are loaded, not in one INSERT."""
    after = dt.datetime.combine(day, dt.time())
    through = after + dt.timedelta(days=1)
    generated = wh._con.execute(
        f"SELECT event_id, company_id, event_ts, loaded_at FROM ({event_rows_sql(events, companies)}) "
        "WHERE loaded_at > $after AND loaded_at <= $through ORDER BY loaded_at",
        {
            "lo": day_start_seq(day - dt.timedelta(days=LATE_DAYS + 1), events),
            "hi": day_start_seq(day + dt.timedelta(days=1), events),
            "after": after,
            "through": through,
        },
    ).fetchall()
    old = day_start_seq(day - dt.timedelta(days=OLD_DAYS), events)
    redelivered = wh._con.execute(
        f"SELECT event_id, company_id, event_ts FROM ({event_rows_sql(events, companies)}) "
        f"WHERE hash(event_id) % 97 = 0 LIMIT {OLD_REDELIVERIES}",
        {"lo": old, "hi": old + 10_000},
    ).fetchall()
    loads: list[tuple[dt.datetime, list[tuple[str, str, dt.datetime]]]] = [
        (loaded_at, [(e, c, ts) for e, c, ts, _ in rows]) for loaded_at, rows in groupby(generated, itemgetter(3))
    ]
    loads.append((after + dt.timedelta(hours=12), redelivered))
    loads.sort(key=itemgetter(0))  # stable: the noon re-deliveries after the noon load
    landed = Landed(0, len(loads), [0.0, 0.0], 0)
    for loaded_at, rows in loads:
        wal_before = wh.log_bytes()
        with wall_cpu(landed.spent):
            landed.rows += load_fact_events(wh, rows, loaded_at)
        landed.checkpoints += wh.log_bytes() < wal_before
    return landed


def add_api_events(wh: DuckDBWarehouse, day: dt.date) -> None:
    """The API's daily events for ``day`` (what the reconciliation compares with): the rollup's
    counts, one company in 50 off by one, as a real feed would be now and then."""
    wh._con.execute(
        """
        INSERT INTO stg.product_usage
        SELECT activity_date, company_id, 1,
               event_count + CASE WHEN hash(company_id) % 50 = 0 THEN 1 ELSE 0 END, 'bench', $now, 'bench'
        FROM agg.company_daily_events WHERE activity_date = $day
        """,
        {"day": day, "now": dt.datetime.combine(day, dt.time(23))},
    )


# ---- what is timed ----------------------------------------------------------------------------------
FULL_GROUP_BY = """
SELECT COUNT(*) AS company_days, SUM(event_count) AS events
FROM (
    SELECT event_date, company_id, COUNT(DISTINCT event_id) AS event_count
    FROM agg.fact_events
    GROUP BY event_date, company_id
) AS full_rollup
"""

# A bare recount of some days with the rollup's rules (first delivered copy of an event_id, its
# UTC day), compared with the rollup's rows both ways: zero rows back means they agree.
VERIFY = """
WITH day_ids AS (
    SELECT DISTINCT event_id FROM agg.fact_events WHERE event_date IN (SELECT UNNEST($days))
),
first_copies AS (
    SELECT event_id, arg_min(company_id, (loaded_at, event_ts, company_id)) AS company_id,
           arg_min(event_date, (loaded_at, event_ts, company_id)) AS event_date
    FROM agg.fact_events SEMI JOIN day_ids USING (event_id)
    GROUP BY event_id
),
expected AS (
    SELECT event_date AS activity_date, company_id, COUNT(*) AS event_count
    FROM first_copies WHERE event_date IN (SELECT UNNEST($days))
    GROUP BY ALL
),
actual AS (
    SELECT activity_date, company_id, event_count FROM agg.company_daily_events
    WHERE activity_date IN (SELECT UNNEST($days))
)
SELECT COUNT(*) FROM ((FROM expected EXCEPT FROM actual) UNION ALL (FROM actual EXCEPT FROM expected))
"""


def timed(action: Callable[[], Any], cpu: list[float] | None = None) -> tuple[float, Any]:
    """Wall seconds and the result; CPU seconds of this process appended to ``cpu``."""
    spent = [0.0, 0.0]
    with wall_cpu(spent):
        result = action()
    if cpu is not None:
        cpu.append(spent[1])
    return spent[0], result


def run(path: Path, args: argparse.Namespace) -> None:
    work = path.with_name("work.duckdb")
    shutil.copyfile(path, work)
    wh = DuckDBWarehouse(work, memory_limit=args.memory_limit)
    wh.apply_schema(START)  # migrations added since the history file was generated
    wh._con.execute("SET temp_directory = $dir", {"dir": str(path.with_name("spill"))})
    settings = Settings(events_reconciliation_tolerance=0.01)
    lookback = dt.timedelta(minutes=settings.events_lookback_minutes)
    (reconciliation,) = checks_named("events_reconciliation")
    history_rows = count_events(wh)
    for name in (*REFRESH_SQL, "checks/events_reconciliation"):
        for statement in load_statements(name):
            to_duckdb(statement)  # translated once per process (cached): a warm worker's state
    full_times: list[float] = []
    full_cpu: list[float] = []
    refresh_times: list[float] = []
    refresh_cpu: list[float] = []
    check_times: list[float] = []
    load_times: list[float] = []
    load_checkpoints = 0
    refreshed: list[int] = []
    rss_start = peak_rss_mib()
    states: dict[str, list[float]] = {}
    steps = time_steps(wh, lambda statement: f"{statement.sql_file.split('__')[-1]}#{statement.index}")
    for repeat in range(args.repeats):
        day = START.date() + dt.timedelta(days=HISTORY_DAYS + repeat)
        parts = [f"  day {day}"]
        if repeat < args.full_repeats:
            full, (totals,) = timed(lambda: wh.run_sql(FULL_GROUP_BY), full_cpu)
            full_times.append(full)
            parts.append(
                f"full GROUP BY {full:.2f} s, CPU {full_cpu[-1]:.2f} s ({totals['company_days']:,} company-days)"
            )
        landed = land_day(wh, day, args.events, args.companies)
        parts.insert(
            1,
            f"+{landed.rows:,} rows in {landed.loads} loads ({landed.spent[0]:.2f} s, CPU {landed.spent[1]:.2f} s; "
            f"{landed.checkpoints} checkpointed)",
        )
        load_times.append(landed.spent[0])
        load_checkpoints += landed.checkpoints
        now = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0, 5))

        run_id = f"bench-{repeat}"
        steps.clear()
        wal_before = wh.log_bytes()
        refresh, result = timed(
            lambda: refresh_company_daily_events(wh, run_id, now, lookback),  # noqa: B023
            refresh_cpu,
        )
        refresh_steps = {name: spent for name, spent in steps.items() if spent[0] >= 0.005}
        wal_after = wh.log_bytes()
        checkpointed = wal_after == 0 or wal_after < wal_before  # the COMMIT checkpointed: the log starts over
        add_api_events(wh, day)
        check, outcome = timed(lambda: evaluate(wh, reconciliation, day, now, settings))  # noqa: B023

        (mismatched,) = wh._con.execute(VERIFY, {"days": result.days}).fetchone()
        if mismatched:
            raise SystemExit(f"the refresh of {day} disagrees with a bare recount on {mismatched} row(s)")
        refresh_times.append(refresh)
        check_times.append(check)
        refreshed.append(len(result.days))
        cold = repeat < args.full_repeats
        state = " + ".join(
            name for name, on in (("after the baseline's scan", cold), ("checkpoint", checkpointed)) if on
        )
        states.setdefault(state or "warm", []).append(refresh)
        days = ", ".join(d.isoformat() for d in result.days)
        parts.append(
            f"incremental {refresh:.3f} s, CPU {refresh_cpu[-1]:.3f} s ({state or 'warm'}; rows on {len(result.days)} "
            f"days: {days})"
        )
        parts.append(
            "steps >= 5 ms (wall/CPU s) " + ", ".join(f"{n} {w:.3f}/{c:.3f}" for n, (w, c) in refresh_steps.items())
        )
        parts.append(f"check {check:.3f} s ({outcome.status}, {outcome.offending_rows} offending)")
        print("; ".join(parts), flush=True)
    wh.close()
    work.unlink()

    full_median = statistics.median(full_times)
    refresh_median = statistics.median(refresh_times)
    print(f"raw events           {history_rows:>14,} over {HISTORY_DAYS} days, {args.companies:,} companies")
    print(f"DuckDB memory limit  {args.memory_limit:>14}   threads: the engine's default")
    print(
        f"full GROUP BY        {full_median:>14.2f} s   (bare engine, median of {len(full_times)}; "
        f"CPU {statistics.median(full_cpu):.2f} s)"
    )
    days = statistics.median(refreshed)
    print(
        f"incremental refresh  {refresh_median:>14.3f} s   (one new day, median of {len(refresh_times)}: "
        f"{min(refresh_times):.3f}-{max(refresh_times):.3f} s; CPU {statistics.median(refresh_cpu):.3f} s; "
        f"rows on {days:.0f} days)"
    )
    print(
        f"ratio                {full_median / refresh_median:>14.0f} x   faster than the full GROUP BY (target >= 100)"
    )
    for state, times in sorted(states.items()):
        print(
            f"  refresh {state + ':':<36} median {statistics.median(times):.3f} s of {len(times)} "
            f"({min(times):.3f}-{max(times):.3f} s) = {full_median / statistics.median(times):.0f} x"
        )
    print(
        f"one day's loads      {statistics.median(load_times):>14.3f} s   (median; load_fact_events, one commit per "
        f"load; {load_checkpoints} of their commits checkpointed, over {len(load_times)} days)"
    )
    print(f"reconciliation check {statistics.median(check_times):>14.3f} s   for one day")
    print(f"peak RSS             {peak_rss_mib():>14.0f} MiB (before the first repeat {rss_start:.0f} MiB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000_000)
    parser.add_argument("--companies", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3, help="new days refreshed (one each)")
    parser.add_argument("--full-repeats", type=int, default=2, help="of those, how many also time the full GROUP BY")
    parser.add_argument("--memory-limit", default="4GB", help="DuckDB memory_limit (keep the machine shareable)")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/events_rollup_bench"))
    parser.add_argument("--generate-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    path = args.dir / f"history_{args.events}_{args.companies}.duckdb"
    if args.generate_only:
        generate(path, args.events, args.companies, args.memory_limit)
        return
    if not path.exists():
        # In a child process: generation's peak memory is not the refresh's.
        subprocess.run([sys.executable, __file__, *sys.argv[1:], "--generate-only"], check=True, cwd=REPO)
    run(path, args)


if __name__ == "__main__":
    main()
