"""Operator services behind the CLI: schema, status report, rollback, backfill, rebuild, replay.

Each function here is what one CLI command calls. They own no pipeline logic of their own:
pulls and staging go through ``usage_ingest`` and ``crm_staging`` (the same code the timer and
the blob trigger run), builds through ``builder`` (the same code the queue trigger runs), and
the build messages they queue have the readiness gate's format. What they add is orchestration
(ranges, chunks, resumability, progress) and reporting.

Dependencies come in explicitly (a warehouse, callables) so the functions are testable without
storage; ``OperatorServices`` is the subset of ``shared.wiring.Services`` the thin
``*_with(services, ...)`` entry points read.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from shared.adapters.warehouse.base import Row, Warehouse
from shared.adapters.warehouse.sql_files import migrations
from shared.errors import PipelineError
from shared.logs import log_context, new_run_id
from shared.rules.build_plan import InputVersions, plan_build
from shared.services import builder, crm_staging, usage_ingest
from shared.services.run_history import record_run
from shared.settings import Settings

log = logging.getLogger(__name__)

# One builder call rebuilds at most this many consecutive days: set-based (one SQL run per
# range) yet small enough that a failure loses little work and progress moves visibly.
DEFAULT_CHUNK_DAYS = 31


class OperatorServices(Protocol):
    """What the operator entry points need from ``shared.wiring.Services``."""

    @property
    def settings(self) -> Settings: ...
    @property
    def warehouse(self) -> Warehouse: ...
    @property
    def blobs(self) -> Any: ...
    @property
    def build_queue(self) -> Any: ...
    @property
    def readiness(self) -> Any: ...
    @property
    def state_table(self) -> Any: ...
    @property
    def usage_api(self) -> Any: ...


class OperationStopped(PipelineError):
    """A multi-date operation stopped part way; the message says where and how to resume."""


# ======================================================================================
# Date ranges
# ======================================================================================
@dataclass(frozen=True)
class DateRange:
    """Inclusive range of UTC days."""

    start: dt.date
    end: dt.date

    def __post_init__(self) -> None:
        if self.start > self.end:
            raise ValueError(f"start {self.start} is after end {self.end}")

    @classmethod
    def single(cls, day: dt.date) -> DateRange:
        return cls(day, day)

    def days(self) -> list[dt.date]:
        return [self.start + dt.timedelta(days=i) for i in range(len(self))]

    def __len__(self) -> int:
        return (self.end - self.start).days + 1

    def __str__(self) -> str:
        return str(self.start) if self.start == self.end else f"{self.start}..{self.end}"


def contiguous_chunks(days: Sequence[dt.date], max_days: int = DEFAULT_CHUNK_DAYS) -> list[DateRange]:
    """Sorted, de-duplicated days grouped into runs of consecutive days, each at most ``max_days``."""
    if max_days < 1:
        raise ValueError("max_days must be >= 1")
    chunks: list[DateRange] = []
    for day in sorted(set(days)):
        last = chunks[-1] if chunks else None
        if last and day == last.end + dt.timedelta(days=1) and len(last) < max_days:
            chunks[-1] = DateRange(last.start, day)
        else:
            chunks.append(DateRange.single(day))
    return chunks


# ======================================================================================
# Progress (the CLI draws it; services only report)
# ======================================================================================
class Progress(Protocol):
    def start_phase(self, name: str, total: int) -> None:
        """A phase of ``total`` dates begins."""

    def advance(self, dates: int, *, skipped: bool = False) -> None:
        """``dates`` more dates of the current phase are done (or were skipped)."""


class NoProgress:
    def start_phase(self, name: str, total: int) -> None:
        pass

    def advance(self, dates: int, *, skipped: bool = False) -> None:
        pass


# ======================================================================================
# schema apply
# ======================================================================================
def apply_schema(warehouse: Warehouse, now: dt.datetime | None = None) -> list[str]:
    """Apply pending migrations; returns the names of those applied (empty: already current)."""
    names = dict(migrations(warehouse.sql_root))
    return [names[version] for version in warehouse.apply_schema(now=now)]


# ======================================================================================
# status
# ======================================================================================
class GateView(Protocol):
    """What the reports read from the readiness gate (shared.services.readiness.ReadinessGate)."""

    def input_versions(self, dates: Sequence[dt.date]) -> Mapping[dt.date, InputVersions]: ...

    def state(self, activity_date: dt.date) -> Any | None: ...


@dataclass(frozen=True)
class InputStatus:
    """One input of a date: is it staged, which version, how many rows, since when, from where."""

    present: bool
    version: str | None = None
    rows: int | None = None
    at: str | None = None  # when it was staged (ISO-8601, UTC)
    source: str | None = None  # the CRM blob / the raw usage blob
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BuildStatus:
    built: bool
    run_id: str | None = None
    rows: int | None = None  # rows written by the last successful build
    current_rows: int = 0  # rows the date holds now (0 after a rollback)
    built_at: str | None = None
    duration_ms: int | None = None
    crm_version: str | None = None
    usage_version: str | None = None
    crm_snapshot_date: str | None = None
    up_to_date: bool | None = None  # versions built == versions present (None: not known)


@dataclass(frozen=True)
class CheckStatus:
    run_id: str | None
    failed: list[dict[str, Any]]
    warned: list[dict[str, Any]]
    passed: int
    errored: list[dict[str, Any]]


@dataclass(frozen=True)
class DateStatus:
    date: str
    inputs: dict[str, InputStatus]
    crm_snapshot_in_force: str | None
    readiness: dict[str, Any] | None
    build: BuildStatus
    checks: CheckStatus
    quarantined_files: list[dict[str, Any]]
    # What fault recovery did for the date: abandoned runs, poisoned inputs and their fate.
    recovery: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The machine-readable shape of ``status --json`` (stable keys, JSON-safe values)."""
        return _json_safe(asdict(self))


@dataclass(frozen=True)
class _DateInputs:
    crm: InputStatus
    usage: InputStatus
    snapshot_in_force: Row | None
    build: BuildStatus


def date_status(warehouse: Warehouse, dates: DateRange, gate: GateView | None = None) -> list[DateStatus]:
    """Per date of ``dates``: inputs, last build, checks and quarantined files.

    With the readiness ``gate`` the report adds each date's gate state, and "up to date" means
    what the builder means: built from the versions the gate holds now. Without it (storage
    unreachable) the versions come from staging, which equal the gate's when both are in step.
    """
    inputs = _inputs_and_builds(warehouse, dates, gate)
    quarantined: dict[dt.date, list[Row]] = {}
    params = {"date_from": dates.start, "date_to": dates.end}
    for row in warehouse.run("ops/date_status__quarantine", params):
        quarantined.setdefault(row["snapshot_date"], []).append(row)
    recovery = warehouse.run("ops/date_status__recovery", params)

    report = []
    for day in dates.days():
        known = inputs[day]
        in_force = known.snapshot_in_force
        state = gate.state(day) if gate is not None else None
        report.append(
            DateStatus(
                date=day.isoformat(),
                inputs={"crm": known.crm, "usage": known.usage},
                crm_snapshot_in_force=in_force["snapshot_date"].isoformat() if in_force else None,
                readiness=_json_safe(asdict(state)) if state is not None else None,
                build=known.build,
                # One small query per date: the quality module's own "latest result per check".
                checks=_check_status(warehouse.run("ops/data_quality_results__latest_for_date", {"check_date": day})),
                quarantined_files=[_quarantine_entry(r) for r in quarantined.get(day, [])],
                recovery=[
                    _json_safe({k: r[k] for k in ("kind", "subject", "status", "at", "note")})
                    for r in recovery
                    if r["date_from"] <= day <= r["date_to"]
                ],
            )
        )
    return report


def _inputs_and_builds(warehouse: Warehouse, dates: DateRange, gate: GateView | None) -> dict[dt.date, _DateInputs]:
    """Staged inputs and last builds of every date of the range: three set-based queries."""
    params = {"date_from": dates.start, "date_to": dates.end}
    snapshots = warehouse.run("ops/date_status__crm_snapshots", params)
    pulls = {r["activity_date"]: r for r in warehouse.run("ops/date_status__usage_pulls", params)}
    builds = {r["activity_date"]: r for r in warehouse.run("ops/date_status__builds", params)}
    own_snapshot = {r["snapshot_date"]: r for r in snapshots}
    crm = {day: _crm_input(own_snapshot.get(day)) for day in dates.days()}
    usage = {day: _usage_input(pulls.get(day)) for day in dates.days()}
    if gate is not None:
        current = dict(gate.input_versions(dates.days()))
    else:
        current = {day: InputVersions(crm[day].version, usage[day].version) for day in dates.days()}
    built = {
        day: InputVersions(row["crm_version"], row["usage_version"])
        for day, row in builds.items()
        if row["run_id"] is not None
    }
    # The builder's own rule decides "nothing new to build": its plan's unchanged dates.
    unchanged = set(plan_build(dates.days(), current, built).unchanged)
    return {
        day: _DateInputs(
            crm[day],
            usage[day],
            _snapshot_in_force(snapshots, day),
            _build_status(builds.get(day), up_to_date=day in unchanged),
        )
        for day in dates.days()
    }


def _snapshot_in_force(snapshots: list[Row], day: dt.date) -> Row | None:
    """The latest snapshot dated on or before ``day`` (rows come sorted by date)."""
    found = None
    for row in snapshots:
        if row["snapshot_date"] <= day:
            found = row
    return found


def _crm_input(row: Row | None) -> InputStatus:
    if row is None:
        return InputStatus(present=False)
    return InputStatus(
        present=True,
        version=row["content_hash"],
        rows=row["row_count"],
        at=_iso(row["ingested_at"]),
        source=row["source_blob"],
        details={
            "rejected_rows": row["rejected_row_count"],
            "duplicate_rows": row["duplicate_row_count"],
            "run_id": row["run_id"],
        },
    )


def _usage_input(row: Row | None) -> InputStatus:
    if row is None:
        return InputStatus(present=False)
    return InputStatus(
        present=True,
        version=row["content_hash"],
        rows=row["staged_row_count"],
        at=_iso(row["ingested_at"]),
        source=row["raw_blob"],
        details={
            "api_records": row["api_record_count"],
            "rejected_records": row["rejected_record_count"],
            "duplicate_records": row["duplicate_record_count"],
            "fetched_at": _iso(row["fetched_at"]),
            "run_id": row["run_id"],
        },
    )


def _build_status(row: Row | None, *, up_to_date: bool) -> BuildStatus:
    if row is None or row["run_id"] is None:
        return BuildStatus(built=False, current_rows=int(row["current_rows"]) if row else 0, up_to_date=False)
    return BuildStatus(
        built=True,
        run_id=row["run_id"],
        rows=row["row_count"],
        current_rows=int(row["current_rows"]),
        built_at=_iso(row["built_at"]),
        duration_ms=row["duration_ms"],
        crm_version=row["crm_version"],
        usage_version=row["usage_version"],
        crm_snapshot_date=_iso(row["crm_snapshot_date"]),
        up_to_date=up_to_date,
    )


def _check_status(rows: list[Row]) -> CheckStatus:
    def brief(row: Row) -> dict[str, Any]:
        return {
            "check": row["check_name"],
            "severity": row["severity"],
            "observed": row["observed_value"],
            "threshold": row["threshold"],
            "message": row["message"],
        }

    by_status: dict[str, list[Row]] = {}
    for row in rows:
        by_status.setdefault(str(row["status"]).lower(), []).append(row)
    return CheckStatus(
        run_id=max((r["run_id"] for r in rows), default=None),
        failed=[brief(r) for r in by_status.get("fail", [])],
        warned=[brief(r) for r in by_status.get("warn", [])],
        passed=len(by_status.get("pass", [])),
        errored=[brief(r) for r in by_status.get("error", [])],
    )


def _quarantine_entry(row: Row) -> dict[str, Any]:
    return {
        "source_blob": row["source_blob"],
        "status": row["status"],
        "reason": row["reason"],
        "rejected_rows": row["rejected_row_count"],
        "quarantine_blob": row["quarantine_blob"],
        "report_blob": row["report_blob"],
        "quarantined_at": _iso(row["quarantined_at"]),
    }


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, dt.date | dt.datetime) else value


def _json_safe(value: Any) -> Any:
    """Dates and datetimes as ISO-8601 strings; everything else as JSON already knows it."""
    return json.loads(json.dumps(value, default=_iso_or_str))


def _iso_or_str(value: Any) -> str:
    iso = _iso(value)
    return iso if isinstance(iso, str) else str(value)


# ======================================================================================
# rollback
# ======================================================================================
@dataclass(frozen=True)
class RollbackResult:
    date: dt.date
    analytics_rows_removed: int
    build_record_removed: bool
    readiness_reset: bool | None  # None: the gate offers no way to reset a date's build state
    run_id: str


def rollback_date(
    warehouse: Warehouse,
    day: dt.date,
    *,
    run_id: str | None = None,
    reset_readiness: Callable[[dt.date], bool] | None = None,
) -> RollbackResult:
    """Delete the analytics rows of ``day`` and forget its last build, in one transaction.

    Forgetting ``ops.date_builds`` is what marks the date for rebuild: the builder skips a date
    whose input versions equal the recorded ones, so without this a rebuild would be a no-op.
    Staging and dims stay: a rebuild derives identical rows from them.
    """
    run_id = run_id or new_run_id()
    with log_context(run_id=run_id, step="rollback", date=day.isoformat()):
        with record_run(warehouse, step="rollback", run_id=run_id, run_date=day, trigger_name="cli") as run:
            with warehouse.transaction():
                preview = warehouse.run("ops/date_rollback__preview", {"activity_date": day})[0]
                warehouse.run("ops/date_rollback__apply", {"activity_date": day})
            run.rows_in = int(preview["analytics_rows"])
            run.rows_out = 0
        reset = reset_readiness(day) if reset_readiness else None
        log.info("rolled back %s: %s analytics rows removed", day, preview["analytics_rows"])
    return RollbackResult(
        date=day,
        analytics_rows_removed=int(preview["analytics_rows"]),
        build_record_removed=bool(preview["build_records"]),
        readiness_reset=reset,
        run_id=run_id,
    )


# ======================================================================================
# backfill
# ======================================================================================
@dataclass(frozen=True)
class BackfillPlan:
    """What a backfill of ``dates`` does: which days it pulls, which it builds, what it skips."""

    dates: DateRange
    pull: list[dt.date]
    pull_skipped: list[dt.date]
    build: list[DateRange]
    build_skipped: list[dt.date]

    @property
    def build_days(self) -> int:
        return sum(len(chunk) for chunk in self.build)


@dataclass(frozen=True)
class BackfillResult:
    plan: BackfillPlan
    pulled: list[dt.date]
    built: list[DateRange]
    build_skipped_after_pull: list[dt.date]
    run_id: str


@dataclass(frozen=True)
class BackfillDateState:
    """What resumability compares for one date."""

    pulled: bool  # usage for the date is staged
    up_to_date: bool  # the last successful build used the inputs present now


StateReader = Callable[[Sequence[dt.date]], Mapping[dt.date, BackfillDateState]]
PullDay = Callable[[dt.date], Any]
BuildRange = Callable[[DateRange], Any]


def plan_backfill(dates: DateRange, states: Mapping[dt.date, BackfillDateState], chunk_days: int) -> BackfillPlan:
    """Pure: dates already pulled are not pulled again; dates built from the present inputs
    are not built again unless their usage is (re)pulled now."""
    pull = [d for d in dates.days() if not states[d].pulled]
    to_build = [d for d in dates.days() if not states[d].up_to_date or d in set(pull)]
    return BackfillPlan(
        dates=dates,
        pull=pull,
        pull_skipped=[d for d in dates.days() if states[d].pulled],
        build=contiguous_chunks(to_build, chunk_days),
        build_skipped=[d for d in dates.days() if d not in set(to_build)],
    )


def run_backfill(
    dates: DateRange,
    *,
    read_states: StateReader,
    pull_day: PullDay,
    build_range: BuildRange,
    progress: Progress | None = None,
    chunk_days: int = DEFAULT_CHUNK_DAYS,
    run_id: str | None = None,
) -> BackfillResult:
    """Pull the days not yet pulled, then build the days not up to date, in chunks.

    Resumable by construction: the plan is recomputed from the warehouse before each phase, so
    a run stopped part way (an error, Ctrl-C) skips on the next run what it had finished.
    """
    progress = progress or NoProgress()
    run_id = run_id or new_run_id()
    plan = plan_backfill(dates, read_states(dates.days()), chunk_days)

    progress.start_phase("pull usage", len(dates))
    progress.advance(len(plan.pull_skipped), skipped=True)
    pulled: list[dt.date] = []
    for day in plan.pull:
        with _stop_with_resume_hint(f"pull of {day}", dates):
            pull_day(day)
        pulled.append(day)
        progress.advance(1)

    # The pull changed usage versions: decide what to build from the warehouse as it is now.
    after_pull = plan_backfill(dates, read_states(dates.days()), chunk_days)
    builds = after_pull.build
    progress.start_phase("build", len(dates))
    progress.advance(len(after_pull.build_skipped), skipped=True)
    built: list[DateRange] = []
    for chunk in builds:
        with _stop_with_resume_hint(f"build of {chunk}", dates):
            build_range(chunk)
        built.append(chunk)
        progress.advance(len(chunk))
    return BackfillResult(plan, pulled, built, after_pull.build_skipped, run_id)


@contextlib.contextmanager
def _stop_with_resume_hint(where: str, dates: DateRange) -> Iterator[None]:
    """Turn a failure inside one step into OperationStopped naming the step and the way on."""
    try:
        yield
    except Exception as exc:
        raise OperationStopped(
            f"backfill stopped at the {where}: {type(exc).__name__}: {exc} (re-run `backfill --start {dates.start} "
            f"--end {dates.end}` to resume: done dates are skipped)"
        ) from exc


def read_backfill_states(
    warehouse: Warehouse, days: Sequence[dt.date], watermarks: Collection[dt.date], gate: GateView | None = None
) -> dict[dt.date, BackfillDateState]:
    """Pulled: the day has a usage watermark (the timer's own notion of done) and staged usage.
    Up to date: its last successful build used the input versions present now."""
    if not days:
        return {}
    known = _inputs_and_builds(warehouse, DateRange(min(days), max(days)), gate)
    return {
        day: BackfillDateState(
            pulled=day in watermarks and known[day].usage.present,
            up_to_date=bool(known[day].build.up_to_date),
        )
        for day in days
    }


# ======================================================================================
# seams to the builder and the readiness gate
# ======================================================================================
def build_message(dates: DateRange, *, reason: str, force: bool) -> dict[str, Any]:
    """A build request in the format the readiness gate queues and the builder reads."""
    return {"start": dates.start.isoformat(), "end": dates.end.isoformat(), "reason": reason, "force": force}


def _build_inline(services: OperatorServices, dates: DateRange, *, force: bool) -> Any:
    """Run a build of ``dates`` now, through the same builder code the queue trigger runs."""
    body = json.dumps(build_message(dates, reason="cli", force=force)).encode()
    outcome = builder.handle_build_message(body, 1, services)
    if outcome is None:  # the builder rejected the message as malformed (it alerted and logged why)
        raise OperationStopped(f"the builder rejected the build request for {dates}")
    return outcome


def _readiness_resetter(gate: Any) -> Callable[[dt.date], bool] | None:
    """The gate's "forget the build of this date", when the gate exposes it."""
    reset = getattr(gate, "reset_build", None)
    return reset if callable(reset) else None


def _aware_utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# ======================================================================================
# entry points: one per CLI command, reading their dependencies from the services container
# ======================================================================================
def status_with(services: OperatorServices, dates: DateRange) -> list[DateStatus]:
    """A diagnostic must work when storage does not: without the gate the report says less."""
    gate: GateView | None
    try:
        gate = services.readiness
        gate.input_versions([dates.start])  # a probe: is the state table configured and reachable?
    except PipelineError as exc:
        log.warning("status without the readiness state (%s: %s)", type(exc).__name__, exc)
        gate = None
    return date_status(services.warehouse, dates, gate)


def rollback_with(services: OperatorServices, day: dt.date) -> RollbackResult:
    # The gate is resolved first: a storage misconfiguration fails before anything is deleted.
    reset = _readiness_resetter(services.readiness)
    return rollback_date(services.warehouse, day, reset_readiness=reset)


def backfill_with(
    services: OperatorServices,
    dates: DateRange,
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
    chunk_days: int = DEFAULT_CHUNK_DAYS,
    clock: Callable[[], dt.datetime] = _aware_utcnow,
) -> BackfillPlan | BackfillResult:
    """Backfill through the timer's pull + staging path and the builder's range build.

    ``dry_run`` returns the plan and touches nothing (no API call, no write)."""
    warehouse, state = services.warehouse, services.state_table

    def read_states(days: Sequence[dt.date]) -> dict[dt.date, BackfillDateState]:
        return read_backfill_states(warehouse, days, usage_ingest.load_watermarks(state).keys(), services.readiness)

    if dry_run:
        return plan_backfill(dates, read_states(dates.days()), chunk_days)
    run_id = new_run_id()
    # One client for the whole backfill: one session, the process's rate limiter, one retry budget.
    source = services.usage_api.for_run()
    deps = usage_ingest.UsageDeps.from_services(services)

    def pull_day(day: dt.date) -> Any:
        with log_context(run_id=run_id, step="backfill", date=day.isoformat()):
            return usage_ingest.ingest_date(day, source, deps, run_id, clock())

    def build_range(chunk: DateRange) -> Any:
        with log_context(run_id=run_id, step="backfill", date=str(chunk)):
            return _build_inline(services, chunk, force=False)

    return run_backfill(
        dates,
        read_states=read_states,
        pull_day=pull_day,
        build_range=build_range,
        progress=progress,
        chunk_days=chunk_days,
        run_id=run_id,
    )


@dataclass(frozen=True)
class RebuildResult:
    dates: DateRange
    inline: bool
    message: dict[str, Any]
    message_id: str | None = None  # when queued
    outcome: Any = None  # the builder's result when run inline


def rebuild_with(services: OperatorServices, dates: DateRange, *, inline: bool = False) -> RebuildResult:
    """Queue one build message for ``dates`` (forced: the operator wants it rebuilt even if the
    inputs did not change), or run the same message through the builder now. The builder adds
    the window neighbours (D+1..D+6 already built)."""
    message = build_message(dates, reason="cli rebuild", force=True)
    if inline:
        return RebuildResult(dates, True, message, outcome=_build_inline(services, dates, force=True))
    services.build_queue.ensure_exists()
    return RebuildResult(dates, False, message, message_id=services.build_queue.send(message))


@dataclass(frozen=True)
class ReplayResult:
    date: dt.date
    usage: Any = None  # usage_ingest.StagedDate
    crm: list[Any] = field(default_factory=list)  # crm_staging.StagingResult per blob of the date


def replay_with(
    services: OperatorServices,
    day: dt.date,
    *,
    usage: bool = True,
    crm: bool = True,
    clock: Callable[[], dt.datetime] = _aware_utcnow,
) -> ReplayResult:
    """Re-stage ``day`` from what already landed: usage from its raw NDJSON (no API call), CRM by
    re-running staging of the date's CRM blob. Unchanged content leaves the tables as they are."""
    run_id = new_run_id()
    staged_usage = None
    if usage:
        deps = usage_ingest.UsageDeps.from_services(services)
        staged_usage = usage_ingest.replay_from_raw(day, deps, run_id, clock())
    staged_crm = []
    if crm:
        for blob_name in crm_blobs_of(services.blobs, services.settings, day):
            staged_crm.append(crm_staging.stage_crm_blob(blob_name, services))
        if not staged_crm:
            raise OperationStopped(f"no CRM blob for {day} in container {services.settings.crm_container}")
    return ReplayResult(day, staged_usage, staged_crm)


def crm_blobs_of(blobs: Any, settings: Settings, day: dt.date) -> list[str]:
    """The CRM blobs whose name carries ``day``, oldest first (the last one staged wins, as when
    the blob trigger saw them arrive in that order)."""
    found = [
        info
        for info in blobs.list(settings.crm_container)
        if crm_staging.snapshot_date_from_name(info.name, settings.crm_date_pattern) == day
    ]
    return [info.name for info in sorted(found, key=lambda i: (i.last_modified, i.name))]
