"""Semantics of analytics.company_daily_activity (SPEC section 4) on DuckDB.

Staging and dim rows are written directly (the CRM and usage loaders are tested elsewhere);
builds go through the builder's ``build`` (plan + one set-based SQL run per range). Expected
rows are written out in the tests; a property test compares any build order with a small
pure-Python reference of section 4 (7- and 28-day windows, trends, churn, days since).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.adapters.warehouse.duckdb_engine import DuckDBWarehouse
from shared.rules.build_plan import WINDOW_DAYS, BuildRequest, InputVersions
from shared.services import builder

Attrs = tuple[str | None, str | None, str | None]  # name, country, industry_tag
Usage = tuple[int, int]  # active_users, events
RESULT_COLUMNS = (
    "activity_date, company_id, company_name, country, industry_tag, active_users, events, "
    "active_users_7d, events_7d, active_days_7d, active_users_28d, events_28d, active_days_28d, "
    "events_prev_7d, events_7d_change_pct, engagement_consistency_28d, events_per_active_user_7d, "
    "days_since_last_activity, is_churn_risk, crm_snapshot_date, data_quality_flags"
)
# The columns whose windows reach back more than 7 days: a usage change on D moves them up to
# D+27. Which built days a change rebuilds is the build plan's (shared/rules/build_plan.py);
# tests that rely on the plan's reach compare these only once the plan reaches 28 days.
WIDE_WINDOW_COLUMNS = (
    "active_users_28d",
    "events_28d",
    "active_days_28d",
    "events_prev_7d",
    "events_7d_change_pct",
    "engagement_consistency_28d",
)


def day(n: int, start: dt.date = dt.date(2025, 1, 1)) -> dt.date:
    """Day n of the scenario: day(1) is 2025-01-01."""
    return start + dt.timedelta(days=n - 1)


def days(first: int, last: int) -> list[dt.date]:
    return [day(n) for n in range(first, last + 1)]


# ---- a tiny world: what is staged, written straight into stg/dim ----------------------------
@dataclass
class World:
    """CRM snapshots and usage as the loaders would stage them, plus their versions."""

    wh: DuckDBWarehouse
    snapshots: dict[dt.date, dict[str, Attrs]] = field(default_factory=dict)
    usage: dict[dt.date, dict[str, Usage]] = field(default_factory=dict)
    _tick: int = 0

    # -- staging ---------------------------------------------------------------------------
    def stage_snapshot(self, on: dt.date, companies: Mapping[str, Attrs | str]) -> None:
        self.snapshots[on] = {c: (a, "DE", "saas") if isinstance(a, str) else a for c, a in companies.items()}
        self._write_crm()

    def stage_usage(self, on: dt.date, rows: Mapping[str, Usage]) -> None:
        self.usage[on] = dict(rows)
        self._tick += 1
        ingested = dt.datetime(2030, 1, 1) + dt.timedelta(seconds=self._tick)
        self.wh.run_sql("DELETE FROM stg.product_usage WHERE activity_date = @d", {"d": on})
        self.wh.run_sql("DELETE FROM stg.usage_pulls WHERE activity_date = @d", {"d": on})
        self.wh.bulk_load(
            "stg.product_usage",
            ("activity_date", "company_id", "active_users", "events", "source_blob", "ingested_at", "run_id"),
            [(on, c, au, ev, "raw", ingested, "stage") for c, (au, ev) in sorted(rows.items())],
        )
        self.wh.run_sql(
            "INSERT INTO stg.usage_pulls (activity_date, raw_blob, content_hash, page_count, api_record_count,"
            " staged_row_count, rejected_record_count, duplicate_record_count, conflicting_record_count,"
            " fetched_at, ingested_at, run_id)"
            " VALUES (@d, 'raw', @h, 1, @n, @n, 0, 0, 0, @t, @t, 'stage')",
            {"d": on, "h": self.usage_version(on), "n": len(rows), "t": ingested},
        )

    def _write_crm(self) -> None:
        """Snapshots and the SCD2 dim derived from all of them (what the CRM loader maintains)."""
        self.wh.run_sql("DELETE FROM stg.crm_snapshots")
        self.wh.run_sql("DELETE FROM dim.companies")
        for snapshot_date, companies in self.snapshots.items():
            self.wh.run_sql(
                "INSERT INTO stg.crm_snapshots VALUES (@d, 'crm.csv', @h, @n, 0, 0, @t, 'stage')",
                {
                    "d": snapshot_date,
                    "h": self.crm_version(snapshot_date),
                    "n": len(companies),
                    "t": dt.datetime(2030, 1, 1),
                },
            )
        rows = [
            (c, valid_from, valid_to, valid_to is None, *attrs, "hash", "stage")
            for c, valid_from, valid_to, attrs in scd2_versions(self.snapshots)
        ]
        self.wh.bulk_load(
            "dim.companies",
            (
                "company_id",
                "valid_from",
                "valid_to",
                "is_current",
                "company_name",
                "country",
                "industry_tag",
                "attributes_hash",
                "run_id",
            ),
            rows,
        )

    # -- versions (what the readiness gate would hold) ----------------------------------------
    def crm_version(self, on: dt.date) -> str | None:
        return _digest(sorted(self.snapshots[on].items())) if on in self.snapshots else None

    def usage_version(self, on: dt.date) -> str | None:
        return _digest(sorted(self.usage[on].items())) if on in self.usage else None

    def input_versions(self, dates: Sequence[dt.date]) -> dict[dt.date, InputVersions]:
        return {
            d: InputVersions(self.crm_version(d), self.usage_version(d))
            for d in dates
            if d in self.snapshots or d in self.usage
        }

    def record_build(self, built: Mapping[dt.date, InputVersions], run_id: str, now: dt.datetime) -> None:
        """The readiness gate's build status: not under test here."""

    # -- building and reading ---------------------------------------------------------------
    def build(self, dates: Iterable[dt.date], force: bool = False, run_id: str | None = None) -> builder.BuildOutcome:
        self._tick += 1
        return builder.build(
            BuildRequest(tuple(sorted(set(dates))), force=force),
            warehouse=self.wh,
            versions=self,
            run_id=run_id or f"run{self._tick}",
            clock=lambda: dt.datetime(2031, 1, 1) + dt.timedelta(seconds=self._tick),
        )

    def rows(self, where: str = "1 = 1", params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        return self.wh.run_sql(
            f"SELECT {RESULT_COLUMNS} FROM analytics.company_daily_activity WHERE {where} "
            "ORDER BY activity_date, company_id",
            params or {},
        )

    def company(self, company_id: str) -> list[tuple[Any, ...]]:
        """(day, active_users, events, au_7d, ev_7d, active_days_7d, days_since, churn) per row."""
        return [
            (
                r["activity_date"],
                r["active_users"],
                r["events"],
                r["active_users_7d"],
                r["events_7d"],
                r["active_days_7d"],
                r["days_since_last_activity"],
                r["is_churn_risk"],
            )
            for r in self.rows("company_id = @c", {"c": company_id})
        ]


def _digest(value: Any) -> str:
    return hashlib.sha256(repr(value).encode()).hexdigest()[:16]


def scd2_versions(
    snapshots: Mapping[dt.date, Mapping[str, Attrs]],
) -> list[tuple[str, dt.date, dt.date | None, Attrs]]:
    """dim.companies semantics: a version closes at the first later snapshot that drops or changes it."""
    versions: list[tuple[str, dt.date, dt.date | None, Attrs]] = []
    open_versions: dict[str, tuple[dt.date, Attrs]] = {}
    for snapshot_date in sorted(snapshots):
        companies = snapshots[snapshot_date]
        for company, (since, attrs) in list(open_versions.items()):
            if companies.get(company) != attrs:
                versions.append((company, since, snapshot_date, attrs))
                del open_versions[company]
        for company, attrs in companies.items():
            open_versions.setdefault(company, (snapshot_date, attrs))
    versions.extend((company, since, None, attrs) for company, (since, attrs) in open_versions.items())
    return versions


# ---- the reference implementation of SPEC section 4 -------------------------------------------
def reference_rows(world: World, dates: Iterable[dt.date]) -> list[dict[str, Any]]:
    """Section 4, written as plainly as possible: one company-day at a time."""
    first_seen: dict[str, dt.date] = {}
    for snapshot_date in sorted(world.snapshots):
        for company in world.snapshots[snapshot_date]:
            first_seen.setdefault(company, snapshot_date)
    for usage_date in sorted(world.usage):
        for company in world.usage[usage_date]:
            first_seen[company] = min(first_seen.get(company, usage_date), usage_date)

    def used(on: dt.date, company: str) -> Usage:
        return world.usage.get(on, {}).get(company, (0, 0))

    rows = []
    for d in sorted(set(dates)):
        snapshot_date = max((s for s in world.snapshots if s <= d), default=None)
        crm = world.snapshots[snapshot_date] if snapshot_date else {}
        reported = world.usage.get(d, {})
        for company in sorted(set(crm) | set(reported)):
            window = [used(d - dt.timedelta(days=k), company) for k in range(7)]
            window_28 = [used(d - dt.timedelta(days=k), company) for k in range(28)]
            events_7d = sum(ev for _, ev in window)
            users_7d = sum(au for au, _ in window)
            events_prev_7d = sum(used(d - dt.timedelta(days=k), company)[1] for k in range(7, 14))
            active_days_28d = sum(1 for au, _ in window_28 if au > 0)
            active_days = [u for u in world.usage if u <= d and max(world.usage[u].get(company, (0, 0))) > 0]
            flags = []
            if snapshot_date is None or snapshot_date < d:
                flags.append("crm_stale")
            if company in crm and company not in reported:
                flags.append("no_usage_reported")
            if company not in crm:
                flags.append("unknown_company")
            name, country, industry = crm.get(company, (None, None, None))
            rows.append(
                {
                    "activity_date": d,
                    "company_id": company,
                    "company_name": name,
                    "country": country,
                    "industry_tag": industry,
                    "active_users": used(d, company)[0],
                    "events": used(d, company)[1],
                    "active_users_7d": users_7d,
                    "events_7d": events_7d,
                    "active_days_7d": sum(1 for au, _ in window if au > 0),
                    "active_users_28d": sum(au for au, _ in window_28),
                    "events_28d": sum(ev for _, ev in window_28),
                    "active_days_28d": active_days_28d,
                    "events_prev_7d": events_prev_7d,
                    "events_7d_change_pct": rounded((events_7d - events_prev_7d) * 100, events_prev_7d, "0.01"),
                    "engagement_consistency_28d": rounded(active_days_28d, 28, "0.0001"),
                    "events_per_active_user_7d": rounded(events_7d, users_7d, "0.01"),
                    "days_since_last_activity": (d - max(active_days)).days if active_days else None,
                    "is_churn_risk": all(u == (0, 0) for u in window)
                    and first_seen[company] <= d - dt.timedelta(days=6),
                    "crm_snapshot_date": snapshot_date,
                    "data_quality_flags": ",".join(flags),
                }
            )
    return rows


def rounded(numerator: int, denominator: int, places: str) -> Decimal | None:
    """numerator / denominator rounded half away from zero to ``places``; None when dividing by 0."""
    if denominator == 0:
        return None
    return (Decimal(numerator) / Decimal(denominator)).quantize(Decimal(places), rounding=ROUND_HALF_UP)


def as_far_as_the_plan_reaches(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows without the wide-window columns while the build plan rebuilds only D..D+6 after a
    change on D (issue 12 widens it to D..D+27); every column once it reaches 28 days."""
    if WINDOW_DAYS >= 28:
        return rows
    return [{k: v for k, v in row.items() if k not in WIDE_WINDOW_COLUMNS} for row in rows]


@pytest.fixture
def world(wh: DuckDBWarehouse) -> World:
    return World(wh)


# ---- rolling windows, churn, days since last activity ------------------------------------------
def test_sparse_usage_gives_calendar_window_sums_and_churn(world: World) -> None:
    """Usage on days 1, 2 and 9 only: windows are calendar days, never the last 7 usage rows."""
    world.stage_snapshot(day(1), {"acme": "Acme"})
    world.stage_usage(day(1), {"acme": (5, 50)})
    world.stage_usage(day(2), {"acme": (3, 30)})
    world.stage_usage(day(9), {"acme": (4, 40)})
    world.build(days(1, 16))

    # (day, active_users, events, active_users_7d, events_7d, active_days_7d, days_since, churn)
    assert world.company("acme") == [
        (day(1), 5, 50, 5, 50, 1, 0, False),
        (day(2), 3, 30, 8, 80, 2, 0, False),
        (day(3), 0, 0, 8, 80, 2, 1, False),
        (day(4), 0, 0, 8, 80, 2, 2, False),
        (day(5), 0, 0, 8, 80, 2, 3, False),
        (day(6), 0, 0, 8, 80, 2, 4, False),
        (day(7), 0, 0, 8, 80, 2, 5, False),
        (day(8), 0, 0, 3, 30, 1, 6, False),  # days 2..8: only day 2 counts
        (day(9), 4, 40, 4, 40, 1, 0, False),  # days 3..9: not 5+3+4
        (day(10), 0, 0, 4, 40, 1, 1, False),  # days 4..10
        (day(11), 0, 0, 4, 40, 1, 2, False),
        (day(12), 0, 0, 4, 40, 1, 3, False),
        (day(13), 0, 0, 4, 40, 1, 4, False),
        (day(14), 0, 0, 4, 40, 1, 5, False),
        (day(15), 0, 0, 4, 40, 1, 6, False),  # days 9..15 still hold day 9
        (day(16), 0, 0, 0, 0, 0, 7, True),  # days 10..16 silent, known since day 1
    ]


def test_sparse_usage_windows_are_the_same_when_each_day_is_built_alone(world: World) -> None:
    world.stage_snapshot(day(1), {"acme": "Acme"})
    world.stage_usage(day(1), {"acme": (5, 50)})
    world.stage_usage(day(2), {"acme": (3, 30)})
    world.stage_usage(day(9), {"acme": (4, 40)})
    for n in (10, 8, 9):
        world.build([day(n)])

    assert world.company("acme") == [
        (day(8), 0, 0, 3, 30, 1, 6, False),
        (day(9), 4, 40, 4, 40, 1, 0, False),
        (day(10), 0, 0, 4, 40, 1, 1, False),
    ]


def test_new_company_is_not_churn_risk_in_its_first_six_days(world: World) -> None:
    world.stage_snapshot(day(1), {"old": "Old"})
    world.stage_snapshot(day(10), {"old": "Old", "new": "New"})
    world.build(days(10, 17))

    churn = [(r["activity_date"], r["is_churn_risk"]) for r in world.rows("company_id = 'new'")]
    assert churn == [
        (day(10), False),
        (day(11), False),
        (day(12), False),
        (day(13), False),
        (day(14), False),
        (day(15), False),
        (day(16), True),  # known since day 10 = D-6, and silent on each of days 10..16
        (day(17), True),
    ]
    # The old company, known since day 1 and never active, is churn risk from the first build day.
    assert {r["is_churn_risk"] for r in world.rows("company_id = 'old'")} == {True}


def test_company_first_seen_in_usage_is_known_from_that_day(world: World) -> None:
    world.stage_snapshot(day(1), {"acme": "Acme"})
    world.stage_usage(day(1), {"acme": (1, 1), "ghost": (0, 0)})  # reported, no activity
    for n in range(2, 9):
        world.stage_usage(day(n), {"acme": (1, 1)})
    world.build(days(1, 8))

    # ghost is only in the spine on day 1 (usage row, unknown to CRM); it is known since day 1.
    assert world.rows("company_id = 'ghost'") == [
        {
            "activity_date": day(1),
            "company_id": "ghost",
            "company_name": None,
            "country": None,
            "industry_tag": None,
            "active_users": 0,
            "events": 0,
            "active_users_7d": 0,
            "events_7d": 0,
            "active_days_7d": 0,
            "active_users_28d": 0,
            "events_28d": 0,
            "active_days_28d": 0,
            "events_prev_7d": 0,
            "events_7d_change_pct": None,  # nothing in days -13..-7 to compare with
            "engagement_consistency_28d": Decimal("0.0000"),
            "events_per_active_user_7d": None,  # no active users
            "days_since_last_activity": None,
            "is_churn_risk": False,
            "crm_snapshot_date": day(1),
            "data_quality_flags": "unknown_company",
        }
    ]


def test_days_since_last_activity_counts_30_silent_days_across_a_month_boundary(world: World) -> None:
    world.stage_snapshot(day(1), {"acme": "Acme"})
    world.stage_usage(dt.date(2025, 1, 20), {"acme": (2, 9)})
    for d in (dt.date(2025, 1, 21), dt.date(2025, 2, 5), dt.date(2025, 2, 19)):
        world.stage_usage(d, {"acme": (0, 0)})  # reported, but no activity
    world.build([dt.date(2025, 2, 19)])
    world.build([dt.date(2025, 1, 20), dt.date(2025, 1, 19)])

    since = {r["activity_date"]: r["days_since_last_activity"] for r in world.rows()}
    assert since == {dt.date(2025, 1, 19): None, dt.date(2025, 1, 20): 0, dt.date(2025, 2, 19): 30}


def test_days_since_last_activity_reaches_back_more_than_a_year(world: World) -> None:
    world.stage_snapshot(dt.date(2023, 1, 1), {"acme": "Acme", "busy": "Busy"})
    world.stage_usage(dt.date(2023, 6, 15), {"acme": (1, 0), "busy": (1, 1)})
    world.stage_usage(dt.date(2024, 7, 14), {"busy": (3, 3)})
    world.stage_usage(dt.date(2024, 7, 15), {"busy": (0, 0)})
    world.build([dt.date(2024, 7, 15)])

    since = {r["company_id"]: r["days_since_last_activity"] for r in world.rows()}
    assert since == {"acme": 396, "busy": 1}
    # The build read a month of usage through a checkpoint, not the year in between.
    checkpoint = world.wh.run_sql(
        "SELECT last_active_date FROM stg.company_activity_checkpoints"
        " WHERE checkpoint_date = '2024-07-01' AND company_id = 'acme'"
    )
    assert checkpoint == [{"last_active_date": dt.date(2023, 6, 15)}]


def test_restaging_old_usage_moves_the_checkpoints_used_by_later_builds(world: World) -> None:
    world.stage_snapshot(dt.date(2024, 1, 1), {"acme": "Acme"})
    world.stage_usage(dt.date(2024, 1, 10), {"acme": (1, 1)})
    world.stage_usage(dt.date(2024, 4, 10), {"acme": (0, 0)})
    world.build([dt.date(2024, 4, 10)])
    assert world.rows()[0]["days_since_last_activity"] == 91

    world.stage_usage(dt.date(2024, 2, 1), {"acme": (0, 5)})  # late: activity on Feb 1
    world.build([dt.date(2024, 4, 10)], force=True)
    assert world.rows()[0]["days_since_last_activity"] == 69

    world.stage_usage(dt.date(2024, 2, 1), {"acme": (0, 0)})  # corrected away again
    world.build([dt.date(2024, 4, 10)], force=True)
    assert world.rows()[0]["days_since_last_activity"] == 91


# ---- 28-day windows and trends ------------------------------------------------------------------
def trends(world: World, company_id: str, on: Iterable[int] | None = None) -> list[tuple[Any, ...]]:
    """(day, au_28d, ev_28d, active_days_28d, ev_7d, ev_prev_7d, change_pct, consistency, ev_per_user)."""
    wanted = None if on is None else {day(n) for n in on}
    return [
        (
            r["activity_date"],
            r["active_users_28d"],
            r["events_28d"],
            r["active_days_28d"],
            r["events_7d"],
            r["events_prev_7d"],
            r["events_7d_change_pct"],
            r["engagement_consistency_28d"],
            r["events_per_active_user_7d"],
        )
        for r in world.rows("company_id = @c", {"c": company_id})
        if wanted is None or r["activity_date"] in wanted
    ]


D = Decimal


def test_28_day_windows_and_week_over_week_trend_over_sparse_usage(world: World) -> None:
    """Usage on six scattered days; every other day has no usage row and counts as 0."""
    world.stage_snapshot(day(1), {"acme": "Acme"})
    world.stage_usage(day(1), {"acme": (5, 50)})
    world.stage_usage(day(2), {"acme": (3, 30)})
    world.stage_usage(day(9), {"acme": (4, 40)})
    world.stage_usage(day(10), {"acme": (0, 7)})  # events without active users: not an active day
    world.stage_usage(day(20), {"acme": (2, 8)})
    world.stage_usage(day(30), {"acme": (1, 1)})
    world.build(days(1, 37))

    # (day, au_28d, ev_28d, active_days_28d, ev_7d, ev_prev_7d, change_pct, consistency, ev_per_user)
    assert trends(world, "acme", on=(1, 8, 10, 16, 17, 20, 27, 28, 29, 30, 36, 37)) == [
        (day(1), 5, 50, 1, 50, 0, None, D("0.0357"), D("10.00")),  # nothing to compare with yet
        (day(8), 8, 80, 2, 30, 50, D("-40.00"), D("0.0714"), D("10.00")),  # days 2..8 vs -5..1
        (day(10), 12, 127, 3, 47, 80, D("-41.25"), D("0.1071"), D("11.75")),
        (day(16), 12, 127, 3, 7, 40, D("-82.50"), D("0.1071"), None),  # 7 events, no active users
        (day(17), 12, 127, 3, 0, 47, D("-100.00"), D("0.1071"), None),
        (day(20), 14, 135, 4, 8, 47, D("-82.98"), D("0.1429"), D("4.00")),
        (day(27), 14, 135, 4, 0, 8, D("-100.00"), D("0.1429"), None),
        (day(28), 14, 135, 4, 0, 8, D("-100.00"), D("0.1429"), None),  # days 1..28
        (day(29), 9, 85, 3, 0, 8, D("-100.00"), D("0.1071"), None),  # day 1 left the 28-day window
        (day(30), 7, 56, 3, 1, 8, D("-87.50"), D("0.1071"), D("1.00")),  # days 3..30; 17..23 held day 20
        (day(36), 7, 56, 3, 1, 0, None, D("0.1071"), D("1.00")),  # days 9..36
        (day(37), 3, 16, 2, 0, 1, D("-100.00"), D("0.0714"), None),  # day 9 left
    ]
    assert world.rows() == reference_rows(world, days(1, 37))


def test_28_day_windows_are_the_same_when_each_day_is_built_alone(world: World) -> None:
    world.stage_snapshot(day(1), {"acme": "Acme"})
    for n, usage in {1: (5, 50), 2: (3, 30), 9: (4, 40), 10: (0, 7), 20: (2, 8), 30: (1, 1)}.items():
        world.stage_usage(day(n), {"acme": usage})
    for n in (37, 29, 8, 30):
        world.build([day(n)])

    assert trends(world, "acme") == [
        (day(8), 8, 80, 2, 30, 50, D("-40.00"), D("0.0714"), D("10.00")),
        (day(29), 9, 85, 3, 0, 8, D("-100.00"), D("0.1071"), None),
        (day(30), 7, 56, 3, 1, 8, D("-87.50"), D("0.1071"), D("1.00")),
        (day(37), 3, 16, 2, 0, 1, D("-100.00"), D("0.0714"), None),
    ]


def test_company_known_for_fewer_than_28_days_counts_the_days_before_it_as_zero(world: World) -> None:
    """'new' joins the CRM on day 20 and is renamed on day 25: its windows hold only its own days,
    consistency is still out of 28 days, and the rename does not break the windows."""
    world.stage_snapshot(day(1), {"old": "Old"})
    world.stage_snapshot(day(20), {"old": "Old", "new": "New Ltd"})
    world.stage_snapshot(day(25), {"old": "Old", "new": "New Group"})
    world.stage_usage(day(20), {"new": (1, 10)})
    world.stage_usage(day(22), {"new": (2, 10)})
    world.stage_usage(day(26), {"new": (1, 4)})
    world.build(days(20, 30))

    assert trends(world, "new", on=(20, 21, 22, 25, 26, 27, 29, 30)) == [
        (day(20), 1, 10, 1, 10, 0, None, D("0.0357"), D("10.00")),
        (day(21), 1, 10, 1, 10, 0, None, D("0.0357"), D("10.00")),
        (day(22), 3, 20, 2, 20, 0, None, D("0.0714"), D("6.67")),  # 20 / 3
        (day(25), 3, 20, 2, 20, 0, None, D("0.0714"), D("6.67")),
        (day(26), 4, 24, 3, 24, 0, None, D("0.1071"), D("6.00")),
        (day(27), 4, 24, 3, 14, 10, D("40.00"), D("0.1071"), D("4.67")),  # days 21..27 vs 14..20
        (day(29), 4, 24, 3, 4, 20, D("-80.00"), D("0.1071"), D("4.00")),
        (day(30), 4, 24, 3, 4, 20, D("-80.00"), D("0.1071"), D("4.00")),
    ]
    names = [(r["activity_date"], r["company_name"]) for r in world.rows("company_id = 'new'")]
    assert names[4:6] == [(day(24), "New Ltd"), (day(25), "New Group")]
    current = world.wh.run_sql(
        "SELECT company_name, active_users_28d, events_28d, active_days_28d, events_prev_7d, events_7d_change_pct,"
        " engagement_consistency_28d, events_per_active_user_7d FROM analytics.company_daily_activity_current"
        " WHERE company_id = 'new' AND activity_date = @d",
        {"d": day(27)},
    )
    assert current == [
        {
            "company_name": "New Group",
            "active_users_28d": 4,
            "events_28d": 24,
            "active_days_28d": 3,
            "events_prev_7d": 10,
            "events_7d_change_pct": D("40.00"),
            "engagement_consistency_28d": D("0.1071"),
            "events_per_active_user_7d": D("4.67"),
        }
    ]
    assert world.rows() == reference_rows(world, days(20, 30))


def test_ratios_round_half_away_from_zero_to_two_decimals(world: World) -> None:
    world.stage_snapshot(day(1), {"up": "Up", "down": "Down", "third": "Third", "two_thirds": "Two thirds"})
    world.stage_usage(day(1), {"up": (8, 800), "down": (8, 800), "third": (1, 3), "two_thirds": (1, 3)})
    world.stage_usage(day(8), {"up": (8, 801), "down": (8, 799), "third": (3, 2), "two_thirds": (3, 5)})
    world.build([day(8)])

    ratios = {
        r["company_id"]: (r["events_7d_change_pct"], r["events_per_active_user_7d"])
        for r in world.rows("activity_date = @d", {"d": day(8)})
    }
    assert ratios == {
        "up": (D("0.13"), D("100.13")),  # +0.125 %, 100.125 events per user
        "down": (D("-0.13"), D("99.88")),  # -0.125 %, 99.875
        "third": (D("-33.33"), D("0.67")),
        "two_thirds": (D("66.67"), D("1.67")),
    }


def test_rows_built_before_the_migration_get_the_new_columns_on_rebuild(world: World) -> None:
    """Migration 0007 adds the columns as NULL; a forced rebuild fills them although every
    other value is unchanged (the MERGE compares them with IS DISTINCT FROM)."""
    world.stage_snapshot(day(1), {"acme": "Acme"})
    world.stage_usage(day(1), {"acme": (2, 4)})
    world.build([day(1)])
    world.wh.run_sql(
        "UPDATE analytics.company_daily_activity SET active_users_28d = NULL, events_28d = NULL,"
        " active_days_28d = NULL, events_prev_7d = NULL, events_7d_change_pct = NULL,"
        " engagement_consistency_28d = NULL, events_per_active_user_7d = NULL"
    )

    world.build([day(1)], force=True)

    assert trends(world, "acme") == [(day(1), 2, 4, 1, 4, 0, None, D("0.0357"), D("2.00"))]


# ---- attributes as of the day, current view ------------------------------------------------------
def test_crm_rename_on_day_5_keeps_old_name_before_and_current_view_shows_new_name(world: World) -> None:
    for n in range(1, 8):
        world.stage_snapshot(day(n), {"acme": "Acme Ltd" if n < 5 else "Acme Group", "zeta": "Zeta"})
        world.stage_usage(day(n), {"acme": (1, 1), "zeta": (1, 1)})
    world.build(days(1, 7))

    as_of = [(r["activity_date"], r["company_name"], r["crm_snapshot_date"]) for r in world.rows("company_id = 'acme'")]
    assert as_of == [
        (day(1), "Acme Ltd", day(1)),
        (day(2), "Acme Ltd", day(2)),
        (day(3), "Acme Ltd", day(3)),
        (day(4), "Acme Ltd", day(4)),
        (day(5), "Acme Group", day(5)),
        (day(6), "Acme Group", day(6)),
        (day(7), "Acme Group", day(7)),
    ]
    current = world.wh.run_sql(
        "SELECT activity_date, company_name FROM analytics.company_daily_activity_current"
        " WHERE company_id = 'acme' ORDER BY activity_date"
    )
    assert [r["company_name"] for r in current] == ["Acme Group"] * 7
    assert {r["data_quality_flags"] for r in world.rows()} == {""}


# ---- spine and flags ---------------------------------------------------------------------------
def test_company_in_usage_but_not_in_crm_is_kept_with_null_attributes_and_flagged(world: World) -> None:
    world.stage_snapshot(day(1), {"acme": "Acme"})
    world.stage_usage(day(1), {"acme": (2, 3), "stranger": (4, 5)})
    world.build([day(1)])

    assert world.rows() == [
        {
            "activity_date": day(1),
            "company_id": "acme",
            "company_name": "Acme",
            "country": "DE",
            "industry_tag": "saas",
            "active_users": 2,
            "events": 3,
            "active_users_7d": 2,
            "events_7d": 3,
            "active_days_7d": 1,
            "active_users_28d": 2,
            "events_28d": 3,
            "active_days_28d": 1,
            "events_prev_7d": 0,
            "events_7d_change_pct": None,
            "engagement_consistency_28d": Decimal("0.0357"),  # 1 / 28
            "events_per_active_user_7d": Decimal("1.50"),
            "days_since_last_activity": 0,
            "is_churn_risk": False,
            "crm_snapshot_date": day(1),
            "data_quality_flags": "",
        },
        {
            "activity_date": day(1),
            "company_id": "stranger",
            "company_name": None,
            "country": None,
            "industry_tag": None,
            "active_users": 4,
            "events": 5,
            "active_users_7d": 4,
            "events_7d": 5,
            "active_days_7d": 1,
            "active_users_28d": 4,
            "events_28d": 5,
            "active_days_28d": 1,
            "events_prev_7d": 0,
            "events_7d_change_pct": None,
            "engagement_consistency_28d": Decimal("0.0357"),
            "events_per_active_user_7d": Decimal("1.25"),
            "days_since_last_activity": 0,
            "is_churn_risk": False,
            "crm_snapshot_date": day(1),
            "data_quality_flags": "unknown_company",
        },
    ]


def test_company_in_crm_without_usage_gets_zeros_and_is_flagged(world: World) -> None:
    world.stage_snapshot(day(1), {"acme": "Acme", "quiet": "Quiet"})
    world.stage_usage(day(1), {"acme": (2, 3)})
    world.build([day(1)])

    [quiet] = world.rows("company_id = 'quiet'")
    assert (quiet["active_users"], quiet["events"], quiet["active_users_7d"], quiet["events_7d"]) == (0, 0, 0, 0)
    assert quiet["days_since_last_activity"] is None
    assert quiet["company_name"] == "Quiet"
    assert quiet["data_quality_flags"] == "no_usage_reported"


def test_day_without_crm_file_is_built_stale_then_rebuilt_when_the_file_arrives(world: World) -> None:
    world.stage_snapshot(day(1), {"acme": "Acme", "leaver": "Leaver"})
    world.stage_usage(day(1), {"acme": (1, 1)})
    world.stage_usage(day(2), {"acme": (2, 2)})
    world.build([day(1)])
    world.build([day(2)])  # grace period passed: built with day 1's snapshot
    stale = world.rows("activity_date = @d", {"d": day(2)})
    assert [(r["company_id"], r["crm_snapshot_date"], r["data_quality_flags"]) for r in stale] == [
        ("acme", day(1), "crm_stale"),
        ("leaver", day(1), "crm_stale,no_usage_reported"),
    ]

    # Day 2's file arrives: leaver is gone, acme renamed, newco added. Its version changed.
    world.stage_snapshot(day(2), {"acme": "Acme 2", "newco": "NewCo"})
    outcome = world.build([day(2)])
    assert outcome.plan.changed == (day(2),)
    rebuilt = world.rows("activity_date = @d", {"d": day(2)})
    assert [(r["company_id"], r["company_name"], r["crm_snapshot_date"], r["data_quality_flags"]) for r in rebuilt] == [
        ("acme", "Acme 2", day(2), ""),
        ("newco", "NewCo", day(2), "no_usage_reported"),
    ]
    # Day 1 is untouched.
    assert [r["company_id"] for r in world.rows("activity_date = @d", {"d": day(1)})] == ["acme", "leaver"]


# ---- late data, order, idempotency ---------------------------------------------------------------
def _full_table(world: World) -> list[dict[str, Any]]:
    return world.wh.run_sql("SELECT * FROM analytics.company_daily_activity ORDER BY activity_date, company_id")


def test_late_correction_of_day_3_rebuilds_its_built_window_and_changes_only_acme_there(world: World) -> None:
    for n in range(1, 11):
        world.stage_snapshot(day(n), {"acme": "Acme", "zeta": "Zeta"})
        world.stage_usage(day(n), {"acme": (n, 10 * n), "zeta": (1, 1)})
    for n in range(3, 11):
        world.build([day(n)])
    before = {(r["activity_date"], r["company_id"]): r for r in _full_table(world)}

    world.stage_usage(day(3), {"acme": (100, 1000), "zeta": (1, 1)})
    outcome = world.build([day(3)])

    assert outcome.plan.changed == (day(3),)
    assert outcome.plan.neighbours == tuple(days(4, 10))  # the built days of D+1..D+27 (28-day windows)
    after = {(r["activity_date"], r["company_id"]): r for r in _full_table(world)}
    assert after.keys() == before.keys()
    moved = sorted(key for key in after if after[key] != before[key])
    assert moved == [(d, "acme") for d in days(3, 10)]  # day 10: its 28-day window holds day 3
    # The new numbers: acme's day 3 went from 3 to 100 users.
    assert [after[(d, "acme")]["active_users_7d"] - before[(d, "acme")]["active_users_7d"] for d in days(3, 9)] == [
        97
    ] * 7
    assert after[(day(10), "acme")]["active_users_7d"] == sum(range(4, 11))


def test_same_message_twice_changes_nothing_and_skips_the_second_build(world: World) -> None:
    for n in range(1, 6):
        world.stage_snapshot(day(n), {"acme": "Acme"})
        world.stage_usage(day(n), {"acme": (n, n), "stranger": (1, 0)})
    world.build(days(1, 5))
    first = _full_table(world)

    again = world.build(days(1, 5))

    assert again.skipped and again.plan.unchanged == tuple(days(1, 5))
    assert _full_table(world) == first
    forced = world.build(days(1, 5), force=True)
    assert forced.plan.changed == tuple(days(1, 5))
    assert _full_table(world) == first  # unchanged rows keep even their run_id and load time


def test_dates_without_rows_are_inserted_by_the_merge_insert_branch_with_the_rows_the_merge_writes(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    dates = _scenario(world)
    asked: list[bool] = []
    holds_rows = builder.holds_rows

    def spied(wh: Any, date_from: dt.date, date_to: dt.date) -> bool:
        asked.append(holds_rows(wh, date_from, date_to))
        return asked[-1]

    monkeypatch.setattr(builder, "holds_rows", spied)
    world.build(dates[:20])
    world.build(dates[20:])
    inserted = _full_table(world)
    assert asked == [False, False]  # both ranges were new: the INSERT branch wrote them

    world.wh.run_sql("DELETE FROM analytics.company_daily_activity")
    world.wh.run_sql("DELETE FROM ops.date_builds")
    monkeypatch.setattr(builder, "holds_rows", lambda *_: True)  # the MERGE, as for a rebuild
    world.build(dates[:20], run_id=inserted[0]["run_id"])
    world.build(dates[20:], run_id=inserted[-1]["run_id"])

    merged = _full_table(world)
    assert [{**r, "record_loaded_at": None} for r in merged] == [{**r, "record_loaded_at": None} for r in inserted]
    assert world.rows() == reference_rows(world, dates)


def _scenario(world: World) -> list[dt.date]:
    rng = random.Random(7)
    companies = ["a", "b", "c", "d"]
    for n in range(1, 41, 3):
        world.stage_snapshot(day(n, dt.date(2025, 1, 20)), {c: f"{c}-{n // 10}" for c in companies[: 2 + n % 3]})
    for n in range(1, 41):
        if n % 5 != 0:
            world.stage_usage(
                day(n, dt.date(2025, 1, 20)),
                {c: (rng.choice([0, 0, 1, 3]), rng.choice([0, 2])) for c in [*companies, "x"] if rng.random() < 0.6},
            )
    return [day(n, dt.date(2025, 1, 20)) for n in range(1, 41)]


def _semantic_table(world: World) -> list[dict[str, Any]]:
    return world.rows()


@pytest.mark.parametrize(
    "order",
    ["one_range", "one_range_in_pieces", "one_range_in_parts", "reversed_days", "shuffled_chunks_with_duplicates"],
)
def test_any_build_order_gives_the_reference_table(wh: DuckDBWarehouse, order: str) -> None:
    world = World(wh)
    dates = _scenario(world)
    if order == "one_range":
        world.build(dates)
    elif order == "one_range_in_pieces":
        # A memory budget of a few days of this spine: the builder cuts the range into pieces
        # (crossing month starts and the windows' reach) inside one transaction.
        wh.build_piece_company_days = 25
        world.build(dates)
    elif order == "one_range_in_parts":
        # ... and a write budget of a week: the build commits in consecutive parts.
        wh.build_piece_company_days, wh.build_transaction_company_days = 12, 40
        world.build(dates)
    elif order == "reversed_days":
        for d in reversed(dates):
            world.build([d])
    else:
        rng = random.Random(3)
        cuts = sorted(rng.sample(range(1, len(dates)), 7))
        chunks = [dates[a:b] for a, b in itertools.pairwise([0, *cuts, len(dates)])]
        rng.shuffle(chunks)
        for chunk in chunks + chunks[:3]:
            world.build(chunk, force=rng.random() < 0.3)

    assert _semantic_table(world) == reference_rows(world, dates)


# ---- property: any staging history and build order converge to the reference ----------------
_COMPANIES = ["a", "b", "c"]
_START = dt.date(2024, 12, 20)  # 50 days cross two month boundaries (checkpoints are monthly)
_SPAN = 50

usage_days = st.dictionaries(
    st.integers(0, _SPAN - 1),
    st.dictionaries(
        st.sampled_from([*_COMPANIES, "u"]), st.tuples(st.sampled_from([0, 0, 2]), st.sampled_from([0, 5]))
    ),
    max_size=18,
)
snapshot_days = st.dictionaries(
    st.integers(0, _SPAN - 1),
    st.dictionaries(st.sampled_from(_COMPANIES), st.sampled_from(["N1", "N2"]), min_size=1),
    max_size=4,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    first_usage=usage_days,
    corrections=usage_days,
    snapshots=snapshot_days,
    early_builds=st.lists(st.tuples(st.integers(0, _SPAN - 1), st.integers(0, 6)), max_size=4),
    chunk_seed=st.integers(0, 10_000),
)
def test_property_any_history_and_build_order_converges_to_the_reference(
    first_usage: dict[int, dict[str, Usage]],
    corrections: dict[int, dict[str, Usage]],
    snapshots: dict[int, dict[str, str]],
    early_builds: list[tuple[int, int]],
    chunk_seed: int,
) -> None:
    """Stage, build some dates, restage (corrections), then build every date in random chunks:
    the table equals the reference computed from the final staging alone."""
    engine = DuckDBWarehouse(":memory:")
    engine.apply_schema()
    try:
        world = World(engine)
        for offset, companies in sorted(snapshots.items()):
            world.stage_snapshot(_START + dt.timedelta(days=offset), companies)
        for offset, rows in sorted(first_usage.items()):
            world.stage_usage(_START + dt.timedelta(days=offset), rows)
        for offset, length in early_builds:
            world.build([_START + dt.timedelta(days=k) for k in range(offset, min(offset + length + 1, _SPAN))])
        for offset, rows in sorted(corrections.items()):
            world.stage_usage(_START + dt.timedelta(days=offset), rows)

        dates = [_START + dt.timedelta(days=k) for k in range(_SPAN)]
        rng = random.Random(chunk_seed)
        cuts = sorted(rng.sample(range(1, _SPAN), 4))
        chunks = [dates[a:b] for a, b in itertools.pairwise([0, *cuts, _SPAN])]
        rng.shuffle(chunks)
        for chunk in chunks:
            world.build(chunk, force=True)

        assert world.rows() == reference_rows(world, dates)
    finally:
        engine.close()


# ---- late corrections reach beyond the 7-day windows ------------------------------------------
def test_late_activity_shortens_days_since_last_activity_on_every_later_built_day(world: World) -> None:
    """The windows reach D..D+27, but days_since_last_activity on day 40 depends on day 10 too."""
    world.stage_snapshot(day(1), {"acme": "Acme", "zeta": "Zeta"})
    world.stage_usage(day(1), {"acme": (1, 1), "zeta": (1, 1)})
    for n in range(2, 41):
        world.stage_usage(day(n), {"acme": (0, 0), "zeta": (1, 1)})
    world.build(days(1, 40))
    assert world.company("acme")[-1][6] == 39

    world.stage_usage(day(10), {"acme": (2, 3), "zeta": (1, 1)})  # late: acme was active on day 10
    outcome = world.build([day(10)])

    assert outcome.plan.neighbours == tuple(days(11, 37))
    assert outcome.plan.beyond_window == tuple(days(38, 40))
    assert [row[6] for row in world.company("acme")[16:]] == list(range(7, 31))
    assert world.rows() == reference_rows(world, days(1, 40))


def test_corrected_away_activity_lengthens_days_since_on_later_days_and_leaves_others(world: World) -> None:
    world.stage_snapshot(day(1), {"acme": "Acme", "zeta": "Zeta"})
    for n in range(1, 46):
        world.stage_usage(day(n), {"acme": (1, 1) if n in (1, 5) else (0, 0), "zeta": (1, 1)})
    world.build(days(1, 45))
    zeta_before = world.company("zeta")

    world.stage_usage(day(5), {"acme": (0, 0), "zeta": (1, 1)})  # day 5's activity was a mistake
    outcome = world.build([day(5)])

    assert outcome.plan.beyond_window == tuple(days(33, 45))
    assert world.company("acme")[-1][6] == 44
    assert world.company("zeta") == zeta_before
    assert world.rows() == reference_rows(world, days(1, 45))


# ---- a CRM snapshot reaches every built day up to the next snapshot ---------------------------------
def _crm_gap(world: World) -> None:
    """Snapshots on days 1 and 40 only; usage every day; days 1..45 built."""
    world.stage_snapshot(day(1), {"acme": "Acme"})
    world.stage_snapshot(day(40), {"acme": "Acme 40"})
    for n in range(1, 46):
        world.stage_usage(day(n), {"acme": (1, 1)})
    world.build(days(1, 45))


def test_a_late_snapshot_inside_a_crm_gap_rebuilds_every_built_day_up_to_the_next_snapshot(world: World) -> None:
    _crm_gap(world)

    world.stage_snapshot(day(5), {"acme": "Acme 5", "newco": "NewCo"})
    outcome = world.build([day(5)])

    assert outcome.plan.neighbours == tuple(days(6, 32))
    assert outcome.plan.crm_reach == tuple(days(33, 39))  # not day 40: its own snapshot is in force
    newco = world.rows("company_id = @c", {"c": "newco"})
    assert [(r["activity_date"], r["crm_snapshot_date"]) for r in newco] == [(d, day(5)) for d in days(5, 39)]
    assert world.rows() == reference_rows(world, days(1, 45))


def test_a_replaced_or_removed_snapshot_is_found_by_any_later_build(world: World) -> None:
    _crm_gap(world)
    world.stage_snapshot(day(5), {"acme": "Acme 5"})
    world.build([day(5)])

    world.stage_snapshot(day(5), {"acme": "Acme five"})  # replaced; its own message was lost
    outcome = world.build([day(45)])  # an unrelated, unchanged request
    assert outcome.plan.unchanged == (day(45),) and outcome.plan.crm_reach == tuple(days(5, 39))
    assert world.rows() == reference_rows(world, days(1, 45))

    del world.snapshots[day(5)]  # removed (e.g. rolled back): days 5..39 fall back to day 1's
    world._write_crm()
    assert world.build([day(45)]).plan.crm_reach == tuple(days(5, 39))
    assert world.rows() == reference_rows(world, days(1, 45))


def test_a_neighbour_with_its_own_correction_still_rebuilds_its_own_window(world: World) -> None:
    """Days 1 and 2 both re-staged; day 1's build rebuilds day 2 as a neighbour, and day 2's own
    message must not then be skipped: day 8 is only in day 2's window."""
    world.stage_snapshot(day(3), {"a": "A"})
    world.build(days(1, 12))

    world.stage_usage(day(1), {})
    world.stage_usage(day(2), {"a": (0, 0)})  # a is known from day 2 now
    world.build([day(1)])
    second = world.build([day(2)])

    assert second.plan.changed == (day(2),)
    assert world.rows() == reference_rows(world, days(1, 12))


def test_known_since_moved_by_an_earlier_message_still_reaches_days_after_the_window(world: World) -> None:
    """Found by the property test: day 1's message refreshes first usage (a from day 2), so day
    2's message must not rely on the old first-usage table to see that days 9..10 changed."""
    world.stage_snapshot(day(4), {"a": "A"})
    world.build(days(1, 14))

    world.stage_usage(day(1), {})
    world.stage_usage(day(2), {"a": (0, 0)})  # known from day 2: churn from day 8, not day 10
    world.build([day(1)])
    world.build([day(2)])

    assert world.rows() == reference_rows(world, days(1, 14))


def test_a_first_appearance_moved_earlier_makes_later_days_churn_risk(world: World) -> None:
    """A usage-only company first seen on day 20, corrected to first appear on day 3."""
    world.stage_snapshot(day(1), {"acme": "Acme"})
    for n in range(1, 31):
        world.stage_usage(day(n), {"acme": (1, 1), **({"ghost": (0, 0)} if n >= 20 else {})})
    world.build(days(1, 30))

    world.stage_usage(day(3), {"acme": (1, 1), "ghost": (0, 0)})
    world.build([day(3)])

    assert world.rows() == reference_rows(world, days(1, 30))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first_usage=usage_days, corrections=usage_days, snapshots=snapshot_days)
def test_property_rebuilding_only_the_restaged_dates_converges_to_the_reference(
    first_usage: dict[int, dict[str, Usage]],
    corrections: dict[int, dict[str, Usage]],
    snapshots: dict[int, dict[str, str]],
) -> None:
    """What the readiness gate does: after corrections, only the re-staged dates are requested
    (no force). Every built row must still equal the reference from the final staging."""
    engine = DuckDBWarehouse(":memory:")
    engine.apply_schema()
    try:
        world = World(engine)
        for offset, companies in sorted(snapshots.items()):
            world.stage_snapshot(_START + dt.timedelta(days=offset), companies)
        for offset, rows in sorted(first_usage.items()):
            world.stage_usage(_START + dt.timedelta(days=offset), rows)
        dates = [_START + dt.timedelta(days=k) for k in range(_SPAN)]
        world.build(dates)
        for offset, rows in sorted(corrections.items()):
            world.stage_usage(_START + dt.timedelta(days=offset), rows)
        for offset in sorted(corrections):
            world.build([_START + dt.timedelta(days=offset)])

        assert as_far_as_the_plan_reaches(world.rows()) == as_far_as_the_plan_reaches(reference_rows(world, dates))
    finally:
        engine.close()
