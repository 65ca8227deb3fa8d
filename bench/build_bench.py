"""Benchmark: the analytics build on DuckDB; cost versus length of history, and range throughput.

Three measurements, each on its own in-memory warehouse with staging generated inside DuckDB:

1. build ONE day for N companies with 30 days of usage history before it;
2. the same day with 3 years of history (target: at most 1.5x the 30-day time, because a
   build reads at most a month of usage plus the monthly activity checkpoint, never the history);
3. a full-year range rebuild (365 days in one set-based run): company-days per second.

With ``--before REV``, the one-day builds of both histories are also timed with the build SQL
(sql/analytics/company_daily_activity__build.sql) of git revision REV, on the same warehouses,
interleaved with the current one (target: the current build at most 1.5x the "before" one,
e.g. the 28-day windows against the 7-day-only build). Only that file differs: the rest of
sql/ and the Python builder are the current ones, and the older SQL simply leaves columns it
does not know NULL in the work table.

The history is in the steady state production reaches: checkpoints refreshed up to the day
before, the day itself freshly staged (so each timed build also refreshes the checkpoints for
the changed day, as the real daily build does). Each day build is timed over several runs
(re-staging the day's pull before each), the two histories interleaved, and the medians are
reported.

    .venv/bin/python bench/build_bench.py                           # 100k companies
    .venv/bin/python bench/build_bench.py --companies 10000 --year-companies 2000   # quick
    .venv/bin/python bench/build_bench.py --skip-year --before 54ea269   # against the 7-day-only build
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.adapters.warehouse.duckdb_engine import DuckDBWarehouse
from shared.adapters.warehouse.sql_files import SQL_ROOT
from shared.rules.build_plan import BuildRequest, InputVersions
from shared.services import builder

BUILD_DAY = dt.date(2025, 6, 30)  # the end of a month: the longest month-to-date read
LOADED_AT = dt.datetime(2025, 7, 1, 2, 0)
BUILD_SQL = "analytics/company_daily_activity__build.sql"
REPO = Path(__file__).resolve().parents[1]


class NoVersions:
    """No readiness state: the benchmark forces its builds."""

    def input_versions(self, dates: Sequence[dt.date]) -> dict[dt.date, InputVersions]:
        return {}

    def record_build(self, built: Mapping[dt.date, InputVersions], run_id: str, now: dt.datetime) -> None:
        return None


def generate_staging(wh: DuckDBWarehouse, companies: int, history_days: int, active_share: float) -> int:
    """Staging for ``history_days`` days ending at BUILD_DAY, in DuckDB SQL (bench-only, not T-SQL).

    Every company is in the CRM from the first day (5 % renamed half-way). Each company reports
    usage on about ``active_share`` of the days (deterministic hash, so runs are comparable), and
    a quarter of the reported rows have no activity.
    """
    con = wh._con  # direct DuckDB: generating tens of millions of rows is not the pipeline's job
    first = BUILD_DAY - dt.timedelta(days=history_days - 1)
    midway = first + dt.timedelta(days=history_days // 2)
    params = {"first": first, "last": BUILD_DAY, "n": companies, "share": active_share}
    con.execute(
        """
        INSERT INTO stg.crm_snapshots
        SELECT d::DATE, 'crm/' || strftime(d, '%Y-%m-%d') || '.csv', md5(d::VARCHAR), $n, 0, 0, $first, 'bench'
        FROM range($first::TIMESTAMP, $last::TIMESTAMP + INTERVAL 1 DAY, INTERVAL 1 DAY) AS t(d)
        """,
        {"first": first, "last": BUILD_DAY, "n": companies},
    )
    con.execute(
        """
        INSERT INTO dim.companies
        SELECT 'c' || lpad(i::VARCHAR, 7, '0'), $first,
               CASE WHEN i % 20 = 0 THEN $mid END, i % 20 <> 0,
               'Company ' || i, 'DE', 'saas', NULL, 'h', 'bench'
        FROM range($n) AS t(i)
        UNION ALL
        SELECT 'c' || lpad(i::VARCHAR, 7, '0'), $mid, NULL, TRUE, 'Company ' || i || ' (renamed)', 'DE', 'saas',
               NULL, 'h2', 'bench'
        FROM range($n) AS t(i) WHERE i % 20 = 0
        """,
        {"first": first, "mid": midway, "n": companies},
    )
    con.execute(
        """
        INSERT INTO stg.product_usage
        SELECT d::DATE, 'c' || lpad(i::VARCHAR, 7, '0'),
               CASE WHEN h % 4 = 0 THEN 0 ELSE 1 + h % 50 END,
               CASE WHEN h % 4 = 0 THEN 0 ELSE h % 997 END,
               'raw', $first, 'bench'
        FROM range($first::TIMESTAMP, $last::TIMESTAMP + INTERVAL 1 DAY, INTERVAL 1 DAY) AS days(d)
        CROSS JOIN range($n) AS companies(i)
        CROSS JOIN LATERAL (SELECT hash(i, d) AS h) AS hashed
        WHERE (h % 1000) < $share * 1000
        ORDER BY 1, 2
        """,
        params,
    )
    con.execute(
        """
        INSERT INTO stg.usage_pulls
        SELECT activity_date, 'raw/date=' || activity_date, md5(activity_date::VARCHAR), 1, COUNT(*), COUNT(*),
               0, 0, 0, $first, $first, 'bench'
        FROM stg.product_usage GROUP BY activity_date
        """,
        {"first": first},
    )
    return int(con.execute("SELECT COUNT(*) FROM stg.product_usage").fetchone()[0])  # type: ignore[index]


def prefill_analytics(wh: DuckDBWarehouse, history_days: int) -> None:
    """Analytics rows for every history day before BUILD_DAY, as earlier builds left them, so
    the timed MERGE meets a target table as large as production's (synthetic values)."""
    first = BUILD_DAY - dt.timedelta(days=history_days - 1)
    wh._con.execute(
        """
        INSERT INTO analytics.company_daily_activity (
            activity_date, company_id, active_users, events, active_users_7d, events_7d, active_days_7d,
            days_since_last_activity, is_churn_risk, crm_snapshot_date, data_quality_flags, record_loaded_at, run_id
        )
        SELECT activity_date, company_id, active_users, events, active_users, events,
               1, 0, FALSE, activity_date, '', $loaded, 'history'
        FROM stg.product_usage WHERE activity_date >= $first AND activity_date < $last
        """,
        {"first": first, "last": BUILD_DAY, "loaded": LOADED_AT},
    )


def settle_history(wh: DuckDBWarehouse) -> None:
    """Production's steady state: checkpoints reflect every pull; then the build day is re-staged."""
    builder.refresh_derived_usage(wh, BUILD_DAY, run_id="history", loaded_at=LOADED_AT)
    restage_build_day(wh, 0)


def restage_build_day(wh: DuckDBWarehouse, attempt: int) -> None:
    """A new pull of BUILD_DAY (same rows, new ingestion time): the build must refresh from it."""
    wh.run_sql(
        "UPDATE stg.usage_pulls SET ingested_at = @t WHERE activity_date = @d",
        {"t": LOADED_AT + dt.timedelta(minutes=attempt), "d": BUILD_DAY},
    )


def sql_root_with_build_of(revision: str, into: Path) -> Path:
    """A copy of sql/ whose build SQL is the one of git ``revision`` (the "before" of a comparison)."""
    root = into / "sql"
    shutil.copytree(SQL_ROOT, root)
    old = subprocess.run(
        ["git", "-C", str(REPO), "show", f"{revision}:sql/{BUILD_SQL}"], check=True, capture_output=True, text=True
    ).stdout
    (root / BUILD_SQL).write_text(old, encoding="utf-8")
    return root


@contextlib.contextmanager
def sql_root(wh: DuckDBWarehouse, root: Path | None) -> Iterator[None]:
    """Run the warehouse's SQL files from ``root`` for a while (None: the current sql/)."""
    if root is None:
        yield
        return
    current, wh.sql_root = wh.sql_root, root
    try:
        yield
    finally:
        wh.sql_root = current


@dataclass
class DayScenario:
    """One warehouse holding ``history_days`` of staging, ready to build BUILD_DAY again and again."""

    history_days: int
    wh: DuckDBWarehouse
    usage_rows: int
    analytics_rows: int
    prepare_s: float
    timings: list[float] = field(default_factory=list)
    before_timings: list[float] = field(default_factory=list)
    rows_built: int = 0

    @classmethod
    def prepare(cls, companies: int, history_days: int, active_share: float, prefill: bool) -> DayScenario:
        wh = DuckDBWarehouse(":memory:")
        wh.apply_schema()
        started = time.perf_counter()
        usage_rows = generate_staging(wh, companies, history_days, active_share)
        if prefill:
            prefill_analytics(wh, history_days)
        settle_history(wh)
        analytics_rows = wh.run_sql("SELECT COUNT(*) AS n FROM analytics.company_daily_activity")[0]["n"]
        return cls(history_days, wh, usage_rows, analytics_rows, time.perf_counter() - started)

    def time_one_build(self, before_root: Path | None = None) -> None:
        """One build of BUILD_DAY after a re-staging; with ``before_root``, with that build SQL."""
        series = self.timings if before_root is None else self.before_timings
        attempt = len(self.timings) + len(self.before_timings) + 1
        restage_build_day(self.wh, attempt)
        with sql_root(self.wh, before_root):
            t0 = time.perf_counter()
            outcome = builder.build(
                BuildRequest((BUILD_DAY,), force=True), warehouse=self.wh, versions=NoVersions(), run_id=f"day{attempt}"
            )
            series.append(time.perf_counter() - t0)
        self.rows_built = outcome.rows_written

    def report(self) -> dict[str, Any]:
        figures = {
            "history_days": self.history_days,
            "usage_rows": self.usage_rows,
            "analytics_rows_before": self.analytics_rows,
            "rows_built": self.rows_built,
            "prepare_s": round(self.prepare_s, 1),
            "build_s_runs": [round(t, 3) for t in self.timings],
            "build_s_median": round(statistics.median(self.timings), 3),
        }
        if self.before_timings:
            figures["before_build_s_runs"] = [round(t, 3) for t in self.before_timings]
            figures["before_build_s_median"] = round(statistics.median(self.before_timings), 3)
            figures["ratio_over_before"] = round(self.ratio_over_before(), 2)
        return figures

    def ratio_over_before(self) -> float:
        return statistics.median(self.timings) / statistics.median(self.before_timings)


def time_day_builds(
    companies: int, active_share: float, repeats: int, prefill: bool, before_root: Path | None
) -> tuple[DayScenario, DayScenario]:
    """Both histories side by side, their builds interleaved (30d, 3y, 30d, ...; with a "before"
    SQL: 30d, 3y, 30d before, 3y before, ...): on a shared machine, load from other processes
    then hits every series alike instead of skewing one."""
    short = DayScenario.prepare(companies, 30, active_share, prefill)
    long = DayScenario.prepare(companies, 3 * 365, active_share, prefill)
    for _ in range(repeats):
        short.time_one_build()
        long.time_one_build()
        if before_root is not None:
            short.time_one_build(before_root)
            long.time_one_build(before_root)
    short.wh.close()
    long.wh.close()
    return short, long


def time_year_rebuild(companies: int, active_share: float) -> dict[str, Any]:
    wh = DuckDBWarehouse(":memory:")
    wh.apply_schema()
    generate_staging(wh, companies, 365 + 31, active_share)
    settle_history(wh)
    first = BUILD_DAY - dt.timedelta(days=364)
    request = BuildRequest(tuple(first + dt.timedelta(days=i) for i in range(365)), force=True)
    t0 = time.perf_counter()
    outcome = builder.build(request, warehouse=wh, versions=NoVersions(), run_id="year")
    seconds = time.perf_counter() - t0
    wh.close()
    return {
        "companies": companies,
        "days": 365,
        "rows_built": outcome.rows_written,
        "build_s": round(seconds, 1),
        "company_days_per_s": round(outcome.rows_written / seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--companies", type=int, default=100_000)
    parser.add_argument("--year-companies", type=int, default=100_000, help="companies in the full-year rebuild")
    parser.add_argument("--active-share", type=float, default=0.4, help="share of company-days with a usage row")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--skip-year", action="store_true")
    parser.add_argument(
        "--prefill-analytics",
        action="store_true",
        help="fill analytics with the history's rows first (the MERGE then meets a production-size target)",
    )
    parser.add_argument(
        "--before",
        metavar="REV",
        help="also time the one-day builds with the build SQL of this git revision (e.g. the 7-day-only build)",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="build_bench_") as scratch:
        before_root = sql_root_with_build_of(args.before, Path(scratch)) if args.before else None
        short, long = time_day_builds(
            args.companies, args.active_share, args.repeats, args.prefill_analytics, before_root
        )
    print(json.dumps({"one_day_30d_history": short.report()}), flush=True)
    print(json.dumps({"one_day_3y_history": long.report()}), flush=True)
    ratio = statistics.median(long.timings) / statistics.median(short.timings)
    print(json.dumps({"ratio_3y_over_30d": round(ratio, 2), "target": "<= 1.5", "met": ratio <= 1.5}), flush=True)
    if args.before:
        over_before = long.ratio_over_before()
        print(
            json.dumps(
                {
                    "ratio_3y_over_before_3y": round(over_before, 2),
                    "before": args.before,
                    "target": "<= 1.5",
                    "met": over_before <= 1.5,
                }
            ),
            flush=True,
        )
    if not args.skip_year:
        print(json.dumps({"full_year_rebuild": time_year_rebuild(args.year_companies, args.active_share)}), flush=True)


if __name__ == "__main__":
    main()
