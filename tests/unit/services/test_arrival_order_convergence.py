"""Any arrival order converges (SPEC section 4, issue 12): the whole pipeline at the service level.

Small random worlds — companies joining, leaving and returning, renames, CRM gaps of 0-20 days,
usage gaps, usage-only companies, corrections far in the past — are delivered through the real
services: CRM staging from CSV bytes (a blob store fake), usage staging from API records (a
source fake; raw landing, screening and the staging swap are real), the readiness gate (real
``decide`` over an in-memory state table), the build queue (a list) and the builder, all on an
in-memory DuckDB. Every input arrives in a random order, some more than once, some first with
other content (a later correction); builds and CRM grace-period sweeps are interleaved at random.
When everything has arrived and the queue is drained, analytics.company_daily_activity (and the
``_current`` view) must equal, row for row and column for column (record_loaded_at and run_id
aside), what one forced rebuild of every date gives from the same final inputs.

Examples: ``CONVERGENCE_PROFILE=convergence-full`` runs 300 (see the README); the default
profile runs 10, a world costing ~1.7 s of CPU, so the suite stays fast.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.adapters.blob_store import BlobInfo
from shared.adapters.usage_api import DayPull
from shared.adapters.warehouse.duckdb_engine import DuckDBWarehouse
from shared.rules.build_plan import BuildRequest
from shared.services import builder, quality
from shared.services.alerts import RecordingAlertSink
from shared.services.crm_staging import stage_crm_snapshot
from shared.services.readiness import ReadinessGate
from shared.services.usage_ingest import ingest_date
from shared.settings import Settings
from tests.fakes import InMemoryStateTable

FIRST_DAY = dt.date(2025, 1, 20)  # worlds span a month boundary: the activity checkpoints matter
START = dt.datetime(2026, 1, 1)  # the clock starts after every day of the world
GRACE_HOURS = 6
SETTINGS = Settings(crm_grace_hours=GRACE_HOURS, usage_lookback_days=0)
COMPARED = (
    "activity_date, company_id, company_name, country, industry_tag, last_contact_at, active_users, events, "
    "active_users_7d, events_7d, active_days_7d, days_since_last_activity, is_churn_risk, crm_snapshot_date, "
    "data_quality_flags"
)

settings.register_profile(
    "convergence-quick",
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "convergence-full",
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PROFILE = settings.get_profile(os.environ.get("CONVERGENCE_PROFILE", "convergence-quick"))


def day(offset: int) -> dt.date:
    return FIRST_DAY + dt.timedelta(days=offset)


# ---- fakes of the storage edges ---------------------------------------------------------------------
class FakeBlobStore:
    """Blob containers in a dict; whole-or-nothing writes like BlobStore."""

    def __init__(self) -> None:
        self.blobs: dict[tuple[str, str], bytes] = {}

    def ensure_container(self, container: str) -> None:
        pass

    def write(self, container: str, name: str, data: bytes | Iterable[bytes], **_: Any) -> BlobInfo:
        content = data if isinstance(data, bytes) else b"".join(data)
        self.blobs[(container, name)] = content
        return self._info(container, name)

    def copy(self, src_container: str, src_name: str, dst_container: str, dst_name: str) -> BlobInfo:
        return self.write(dst_container, dst_name, self.blobs[(src_container, src_name)])

    def info(self, container: str, name: str) -> BlobInfo | None:
        return self._info(container, name) if (container, name) in self.blobs else None

    def iter_chunks(
        self, container: str, name: str, chunk_size: int = 64, *, etag: str | None = None
    ) -> Iterator[bytes]:
        content = self.blobs[(container, name)]
        if etag is not None and etag != self._etag(content):
            raise AssertionError("the fake never overwrites a blob while it is read")
        for start in range(0, len(content), chunk_size):
            yield content[start : start + chunk_size]

    def read_bytes(self, container: str, name: str) -> bytes:
        return self.blobs[(container, name)]

    def delete(self, container: str, name: str) -> None:
        self.blobs.pop((container, name), None)

    def _info(self, container: str, name: str) -> BlobInfo:
        content = self.blobs[(container, name)]
        return BlobInfo(container, name, self._etag(content), len(content), None, START, {})

    @staticmethod
    def _etag(content: bytes) -> str:
        """A new version per content, as the service gives a new ETag per write."""
        return hashlib.sha256(content).hexdigest()[:16]


class FakeQueue:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def send(self, message: dict[str, Any]) -> str:
        self.messages.append(message)
        return str(len(self.messages))


class RecordsSource:
    """The usage API for one day: the records of the delivery being played."""

    def __init__(self, records: list[dict[str, Any]], fetched_at: dt.datetime) -> None:
        self.records = records
        self.fetched_at = fetched_at

    def fetch_day(self, activity_date: dt.date) -> DayPull:
        body = b"".join(json.dumps(r).encode() + b"\n" for r in self.records)
        return DayPull(activity_date, self.fetched_at, 1, len(self.records), ["req"], lambda: iter([body]))


# ---- a world and its inputs ----------------------------------------------------------------------
CrmRows = tuple[tuple[str, str, str], ...]  # (company_id, name, industry_tag), sorted
UsageRows = tuple[tuple[str, int, int], ...]  # (company_id, active_users, events), sorted


@dataclass(frozen=True)
class Delivery:
    """One arrival: a CRM file or one day's usage pull, with the content it carries."""

    kind: str  # "crm" | "usage"
    offset: int  # the day, as an offset from FIRST_DAY
    content: CrmRows | UsageRows

    def __repr__(self) -> str:  # shrunk examples read as a list of arrivals
        return f"{self.kind}@{self.offset}:{list(self.content)}"


@dataclass(frozen=True)
class Build:
    messages: int  # how many queued messages the builder takes

    def __repr__(self) -> str:
        return f"build x{self.messages}"


@dataclass(frozen=True)
class Sweep:
    hours: int  # the clock moves on this much, then the CRM grace-period sweep runs

    def __repr__(self) -> str:
        return f"sweep +{self.hours}h"


Action = Delivery | Build | Sweep


def crm_csv(rows: CrmRows) -> bytes:
    lines = ["company_id,name,country,industry_tag,last_contact_at"]
    lines += [f"{company},{name},DE,{tag}," for company, name, tag in rows]
    return ("\n".join(lines) + "\n").encode()


def usage_records(offset: int, rows: UsageRows) -> list[dict[str, Any]]:
    on = day(offset).isoformat()
    return [{"company_id": c, "date": on, "active_users": au, "events": ev} for c, au, ev in rows]


# ---- the pipeline, wired from real services over the fakes -------------------------------------------
@pytest.fixture(autouse=True, scope="module")
def _without_quality_checks() -> Iterator[None]:
    """Convergence is about the built rows; the checks each build runs are tested on their own."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(quality, "run_checks", lambda *args, **kwargs: [])
        yield


@dataclass
class Pipeline:
    warehouse: DuckDBWarehouse = field(default_factory=lambda: _fresh_warehouse())
    blobs: FakeBlobStore = field(default_factory=FakeBlobStore)
    state: InMemoryStateTable = field(default_factory=InMemoryStateTable)
    queue: FakeQueue = field(default_factory=FakeQueue)
    alerts: RecordingAlertSink = field(default_factory=RecordingAlertSink)
    now: dt.datetime = START
    final: dict[tuple[str, int], CrmRows | UsageRows] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.gate = ReadinessGate(self.state, self.queue, crm_grace_hours=GRACE_HOURS, sleep=lambda _: None)
        self.resources = SimpleNamespace(
            settings=SETTINGS,
            warehouse=self.warehouse,
            blobs=self.blobs,
            state_table=self.state,
            readiness=self.gate,
            alerts=self.alerts,
        )

    def tick(self, minutes: int = 5) -> dt.datetime:
        self.now += dt.timedelta(minutes=minutes)
        return self.now

    def deliver(self, delivery: Delivery) -> None:
        self.final[(delivery.kind, delivery.offset)] = delivery.content
        if delivery.kind == "crm":
            self._deliver_crm(delivery.offset, delivery.content)  # type: ignore[arg-type]
        else:
            self._deliver_usage(delivery.offset, delivery.content)  # type: ignore[arg-type]

    def _deliver_crm(self, offset: int, rows: CrmRows) -> None:
        name = f"crm_{day(offset).isoformat()}.csv"
        self.blobs.write(SETTINGS.crm_container, name, crm_csv(rows))
        now = self.tick()
        result = stage_crm_snapshot(
            name,
            settings=SETTINGS,
            blobs=self.blobs,
            warehouse=self.warehouse,
            readiness=self.gate,
            alerts=self.alerts,
            clock=lambda: now,
        )
        assert result.status in ("staged", "unchanged"), result.reason

    def _deliver_usage(self, offset: int, rows: UsageRows) -> None:
        now = self.tick()
        ingest_date(day(offset), RecordsSource(usage_records(offset, rows), now), self.resources, "usage-run", now)

    def build(self, messages: int) -> None:
        for _ in range(messages):
            if not self.queue.messages:
                return
            body = json.dumps(self.queue.messages.pop(0)).encode()
            self.tick()
            assert builder.handle_build_message(body, 1, self.resources) is not None

    def sweep(self, hours: int) -> None:
        self.now += dt.timedelta(hours=hours)
        self.gate.check_grace_periods(self.now, "sweep-run")

    def play(self, action: Action) -> None:
        if isinstance(action, Delivery):
            self.deliver(action)
        elif isinstance(action, Build):
            self.build(action.messages)
        else:
            self.sweep(action.hours)

    def settle(self) -> None:
        """Every grace period over, every message built, until nothing is left to do."""
        for _ in range(10):
            self.sweep(GRACE_HOURS + 1)
            if not self.queue.messages:
                return
            self.build(len(self.queue.messages))
        raise AssertionError("the pipeline kept queueing builds")

    def table(self, name: str) -> list[dict[str, Any]]:
        return self.warehouse.run_sql(f"SELECT {COMPARED} FROM {name} ORDER BY activity_date, company_id")

    def built_dates(self) -> list[dt.date]:
        rows = self.warehouse.run_sql("SELECT activity_date FROM ops.date_builds ORDER BY activity_date")
        return [r["activity_date"] for r in rows]


def _fresh_warehouse() -> DuckDBWarehouse:
    warehouse = DuckDBWarehouse(":memory:")
    warehouse.apply_schema()
    return warehouse


def full_rebuild(final: dict[tuple[str, int], CrmRows | UsageRows]) -> Pipeline:
    """The reference: the final inputs staged in date order, then one forced build of every day
    that has usage (the days the pipeline builds; a day without usage is never built)."""
    reference = Pipeline()
    for (kind, offset), content in sorted(final.items(), key=lambda item: (item[0][1], item[0][0])):
        reference.deliver(Delivery(kind, offset, content))
    usage_days = sorted(day(offset) for kind, offset in final if kind == "usage")
    if usage_days:
        builder.build(
            BuildRequest(dates=tuple(usage_days), reason="reference", force=True),
            warehouse=reference.warehouse,
            versions=reference.gate,
            run_id="reference",
        )
    return reference


# ---- strategies ---------------------------------------------------------------------------------------
COMPANIES = ("c1", "c2", "c3")
USAGE_ONLY = ("u1",)

crm_rows = st.lists(
    st.tuples(st.sampled_from(COMPANIES), st.sampled_from(("Acme", "Beta")), st.sampled_from(("saas", "retail"))),
    min_size=1,
    max_size=3,
    unique_by=lambda row: row[0],
).map(lambda rows: tuple(sorted(rows)))

usage_rows = st.lists(
    st.tuples(st.sampled_from(COMPANIES + USAGE_ONLY), st.integers(0, 2), st.integers(0, 3)),
    max_size=3,
    unique_by=lambda row: row[0],
).map(lambda rows: tuple(sorted(rows)))


@st.composite
def snapshot_offsets(draw: st.DrawFn, span: int) -> list[int]:
    """CRM snapshot days with gaps of 0-20 missing days between them."""
    offsets = [draw(st.integers(0, 3))]
    while True:
        following = offsets[-1] + 1 + draw(st.integers(0, 20))
        if following >= span or draw(st.integers(0, 3)) == 0:
            return offsets
        offsets.append(following)


@st.composite
def worlds(draw: st.DrawFn) -> list[Action]:
    """The arrivals of one world, in a random order, interleaved with builds and sweeps."""
    span = draw(st.integers(5, 40))
    usage_offsets = draw(st.lists(st.integers(0, span - 1), min_size=1, max_size=span, unique=True))
    arrivals = [Delivery("crm", o, draw(crm_rows)) for o in draw(snapshot_offsets(span))]
    arrivals += [Delivery("usage", o, draw(usage_rows)) for o in sorted(usage_offsets)]
    # Some inputs arrive more than once: the same content again, or other content (a
    # correction, however far back), or first other content and then their own.
    extras: list[Delivery] = []
    for arrival in draw(st.lists(st.sampled_from(arrivals), max_size=4)):
        other = draw(crm_rows if arrival.kind == "crm" else usage_rows)
        extras.append(draw(st.sampled_from((arrival, Delivery(arrival.kind, arrival.offset, other)))))
    order = draw(st.permutations(arrivals + extras))
    between = st.lists(st.one_of(st.builds(Build, st.integers(1, 3)), st.builds(Sweep, st.integers(0, 8))), max_size=2)
    actions: list[Action] = []
    for arrival in order:
        actions.append(arrival)
        actions.extend(draw(between))
    return actions


# ---- the property ------------------------------------------------------------------------------------
@settings(PROFILE)
@given(actions=worlds())
def test_any_arrival_order_gives_the_table_one_full_rebuild_gives(actions: list[Action]) -> None:
    pipeline = Pipeline()
    for action in actions:
        pipeline.play(action)
    pipeline.settle()

    reference = full_rebuild(pipeline.final)
    assert pipeline.built_dates() == sorted(day(o) for kind, o in pipeline.final if kind == "usage")
    assert pipeline.table("analytics.company_daily_activity") == reference.table("analytics.company_daily_activity")
    assert pipeline.table("analytics.company_daily_activity_current") == reference.table(
        "analytics.company_daily_activity_current"
    )
