"""Operator services behind the CLI: schema, status report, rollback, backfill, rebuild, checks,
runs and alert listings. (Replay, which compares staging with the raw inputs, is in
``shared.services.replay``.)

Each function here is what one CLI command calls. They own no pipeline logic of their own:
pulls and staging go through ``usage_ingest`` and ``crm_staging`` (the same code the timer and
the blob trigger run), builds through ``builder`` (the same code the queue trigger runs), and
the build messages they queue have the readiness gate's format. What they add is orchestration
(ranges, chunks, resumability, progress) and reporting, and the rules every operator command
follows: no date after yesterday (UTC) is touched (``FutureDateRefused``), a ``dry_run`` reads
and plans but writes nothing, and Ctrl-C part way raises ``Interrupted`` naming what is left.

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
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol

from shared.adapters.warehouse.base import Row, Warehouse
from shared.adapters.warehouse.sql_files import migrations
from shared.errors import PipelineError
from shared.logs import log_context, new_run_id
from shared.rules.build_plan import InputVersions, plan_build
from shared.rules.dates import refuse_future_dates
from shared.services import alert_deliveries, builder, quality, usage_ingest
from shared.services.run_history import recent_runs, record_run
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
    @property
    def alerts(self) -> Any: ...


class OperationStopped(PipelineError):
    """A multi-date operation stopped part way; the message says where and how to resume."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a chunked operation, after the chunks before ``remaining`` committed.

    Still a KeyboardInterrupt (nothing may swallow it as an error); ``remaining`` is the range
    still to do, so the CLI can print the command that resumes exactly there."""

    def __init__(self, remaining: DateRange) -> None:
        super().__init__(f"interrupted; {remaining} is left to do")
        self.remaining = remaining


def _aware_utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


Clock = Callable[[], dt.datetime]


def refuse_future(days: Sequence[dt.date] | DateRange, clock: Clock = _aware_utcnow) -> None:
    """Every operator command's first step: nothing after yesterday (UTC) is read, planned or
    changed (FutureDateRefused names the first such date)."""
    refuse_future_dates(days.days() if isinstance(days, DateRange) else days, clock())


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
def apply_schema(warehouse: Warehouse, now: dt.datetime | None = None, *, dry_run: bool = False) -> list[str]:
    """Apply pending migrations; returns the names of those applied (empty: already current).
    ``dry_run`` returns the names it would apply and applies nothing."""
    if dry_run:
        return [name for _, name in warehouse.pending_migrations()]
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
    # Built from the versions present now AND its data-quality checks ran after the build: a
    # build whose checks were interrupted is not done (a resumed backfill runs them).
    up_to_date: bool | None = None
    inputs_current: bool | None = None  # versions built == versions present
    checked_at: str | None = None  # the last full check run of the date, after its build


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
            _build_status(builds.get(day), inputs_current=day in unchanged),
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


def _build_status(row: Row | None, *, inputs_current: bool) -> BuildStatus:
    if row is None or row["run_id"] is None:
        return BuildStatus(
            built=False, current_rows=int(row["current_rows"]) if row else 0, up_to_date=False, inputs_current=False
        )
    checked = bool(row["checks_ran"])
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
        up_to_date=inputs_current and checked,
        inputs_current=inputs_current,
        checked_at=_iso(row["last_checked_at"]) if checked else None,
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


def _day(value: str) -> dt.date:
    return dt.date.fromisoformat(value)


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
    run_id: str | None  # None: nothing was done (a dry run, or a date never built)
    dry_run: bool = False
    never_built: bool = False  # no analytics rows and no build record: nothing to roll back

    def to_dict(self) -> dict[str, Any]:
        return _json_safe(asdict(self))


def rollback_preview(warehouse: Warehouse, day: dt.date) -> RollbackResult:
    """What a rollback of ``day`` would remove (read only)."""
    preview = warehouse.run("ops/date_rollback__preview", {"activity_date": day})[0]
    rows, records = int(preview["analytics_rows"]), int(preview["build_records"])
    return RollbackResult(day, rows, bool(records), None, None, dry_run=True, never_built=not rows and not records)


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
    preview = rollback_preview(warehouse, day)
    if preview.never_built:
        log.info("rollback of %s: never built (or already rolled back); nothing changed", day)
        return replace(preview, dry_run=False)
    run_id = run_id or new_run_id()
    with log_context(run_id=run_id, step="rollback", date=day.isoformat()):
        with record_run(warehouse, step="rollback", run_id=run_id, run_date=day, trigger_name="cli") as run:
            with warehouse.transaction():
                counts = warehouse.run("ops/date_rollback__preview", {"activity_date": day})[0]
                warehouse.run("ops/date_rollback__apply", {"activity_date": day})
            run.rows_in = int(counts["analytics_rows"])
            run.rows_out = 0
        reset = reset_readiness(day) if reset_readiness else None
        log.info("rolled back %s: %s analytics rows removed", day, counts["analytics_rows"])
    return RollbackResult(
        date=day,
        analytics_rows_removed=int(counts["analytics_rows"]),
        build_record_removed=bool(counts["build_records"]),
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
    # Built from the present inputs but their checks never ran (an interrupted run): checked only.
    check: list[dt.date] = field(default_factory=list)

    @property
    def build_days(self) -> int:
        return sum(len(chunk) for chunk in self.build)

    def to_dict(self) -> dict[str, Any]:
        return _json_safe({**asdict(self), "dates": str(self.dates), "build": [str(c) for c in self.build]})


@dataclass(frozen=True)
class BackfillResult:
    plan: BackfillPlan
    pulled: list[dt.date]
    built: list[DateRange]
    build_skipped_after_pull: list[dt.date]
    run_id: str
    checked: list[dt.date] = field(default_factory=list)  # dates whose missing checks were run

    def to_dict(self) -> dict[str, Any]:
        return _json_safe(
            {
                "run_id": self.run_id,
                "dates": str(self.plan.dates),
                "pulled": self.pulled,
                "pull_skipped": self.plan.pull_skipped,
                "built": [str(c) for c in self.built],
                "built_dates": sum(len(c) for c in self.built),
                "build_skipped": self.build_skipped_after_pull,
                "checked": self.checked,
            }
        )


@dataclass(frozen=True)
class BackfillDateState:
    """What resumability compares for one date."""

    pulled: bool  # usage for the date is staged
    up_to_date: bool  # the last successful build used the inputs present now
    checked: bool = True  # its data-quality checks ran after that build


StateReader = Callable[[Sequence[dt.date]], Mapping[dt.date, BackfillDateState]]
PullDay = Callable[[dt.date], Any]
BuildRange = Callable[[DateRange], Any]
CheckDays = Callable[[Sequence[dt.date]], Any]


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
        check=[d for d in dates.days() if d not in set(to_build) and not states[d].checked],
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
    check_days: CheckDays | None = None,
) -> BackfillResult:
    """Pull the days not yet pulled, build the days not up to date, in chunks, then run the
    checks of built days whose checks never ran (``check_days``).

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

    checked: list[dt.date] = []
    if check_days is not None:
        # Builds run their checks; dates whose checks never ran (Ctrl-C between a build and its
        # checks, a check run that failed) are checked now, from the warehouse as it is.
        unchecked = plan_backfill(dates, read_states(dates.days()), chunk_days).check
        progress.start_phase("checks", len(unchecked))
        for chunk in contiguous_chunks(unchecked, chunk_days):
            with _stop_with_resume_hint(f"checks of {chunk}", dates):
                check_days(chunk.days())
            checked.extend(chunk.days())
            progress.advance(len(chunk))
    return BackfillResult(plan, pulled, built, after_pull.build_skipped, run_id, checked)


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
            up_to_date=bool(known[day].build.inputs_current),
            checked=not known[day].build.built or known[day].build.checked_at is not None,
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


# ======================================================================================
# entry points: one per CLI command, reading their dependencies from the services container
# ======================================================================================
def status_with(services: OperatorServices, dates: DateRange, clock: Clock = _aware_utcnow) -> list[DateStatus]:
    """A diagnostic must work when storage does not: without the gate the report says less."""
    refuse_future(dates, clock)
    gate: GateView | None
    try:
        gate = services.readiness
        gate.input_versions([dates.start])  # a probe: is the state table configured and reachable?
    except PipelineError as exc:
        log.warning("status without the readiness state (%s: %s)", type(exc).__name__, exc)
        gate = None
    return date_status(services.warehouse, dates, gate)


def rollback_with(
    services: OperatorServices, day: dt.date, *, dry_run: bool = False, clock: Clock = _aware_utcnow
) -> RollbackResult:
    refuse_future([day], clock)
    if dry_run:
        return rollback_preview(services.warehouse, day)
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
    clock: Clock = _aware_utcnow,
) -> BackfillPlan | BackfillResult:
    """Backfill through the timer's pull + staging path and the builder's range build, then the
    checks any built date still lacks.

    ``dry_run`` returns the plan and touches nothing (no API call, no write)."""
    refuse_future(dates, clock)
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

    def check_days(days: Sequence[dt.date]) -> Any:
        return run_quality_checks(services, days, run_id, clock)

    return run_backfill(
        dates,
        read_states=read_states,
        pull_day=pull_day,
        build_range=build_range,
        progress=progress,
        chunk_days=chunk_days,
        run_id=run_id,
        check_days=check_days,
    )


# ---- rebuild ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class RebuildResult:
    dates: DateRange
    inline: bool
    messages: list[dict[str, Any]]  # one per chunk: what is (or would be) queued or built
    message_ids: list[str] = field(default_factory=list)  # when queued
    outcomes: list[Any] = field(default_factory=list)  # the builder's results when run inline
    dry_run: bool = False

    @property
    def run_ids(self) -> list[str]:
        return [outcome.run_id for outcome in self.outcomes]

    @property
    def rows_written(self) -> int:
        return sum(outcome.rows_written for outcome in self.outcomes)

    def to_dict(self) -> dict[str, Any]:
        return _json_safe(
            {
                "dates": str(self.dates),
                "inline": self.inline,
                "dry_run": self.dry_run,
                "chunks": [str(DateRange(_day(m["start"]), _day(m["end"]))) for m in self.messages],
                "messages": self.messages,
                "message_ids": self.message_ids,
                "run_ids": self.run_ids,
                "dates_built": sum(len(o.plan.targets) for o in self.outcomes),
                "rows_written": self.rows_written,
            }
        )


def rebuild_with(
    services: OperatorServices,
    dates: DateRange,
    *,
    inline: bool = False,
    dry_run: bool = False,
    chunk_days: int = DEFAULT_CHUNK_DAYS,
    progress: Progress | None = None,
    clock: Clock = _aware_utcnow,
) -> RebuildResult:
    """Rebuild ``dates`` in chunks of at most ``chunk_days`` consecutive days (as backfill does,
    so each message fits the builder's functionTimeout): one forced build message per chunk
    queued, or run now through the builder (``inline``), which also runs each chunk's checks.
    The builder adds the window neighbours (D+1..D+6 already built).

    Ctrl-C while building inline raises ``Interrupted`` with the range still to rebuild: the
    chunks before it are committed and checked, the current one rolled back."""
    refuse_future(dates, clock)
    chunks = contiguous_chunks(dates.days(), chunk_days)
    messages = [build_message(chunk, reason="cli rebuild", force=True) for chunk in chunks]
    if dry_run:
        return RebuildResult(dates, inline, messages, dry_run=True)
    if not inline:
        services.build_queue.ensure_exists()
        return RebuildResult(dates, False, messages, message_ids=[services.build_queue.send(m) for m in messages])
    progress = progress or NoProgress()
    progress.start_phase("rebuild", len(dates))
    outcomes = []
    for chunk in chunks:
        try:
            outcomes.append(_build_inline(services, chunk, force=True))
        except KeyboardInterrupt as exc:
            raise Interrupted(DateRange(chunk.start, dates.end)) from exc
        progress.advance(len(chunk))
    return RebuildResult(dates, True, messages, outcomes=outcomes)


# ---- checks ----------------------------------------------------------------------------------
def run_quality_checks(
    services: OperatorServices, days: Sequence[dt.date], run_id: str, clock: Clock = _aware_utcnow
) -> list[quality.CheckResult]:
    """The full data-quality checks of ``days``, as after a build (stored, flagged, alerted)."""
    with log_context(run_id=run_id, step=quality.QUALITY_STEP):
        return quality.run_checks(services.warehouse, days, run_id, clock(), services.settings, services.alerts)


@dataclass(frozen=True)
class ChecksRun:
    dates: DateRange
    checked: list[dt.date]  # built dates whose checks ran (or would run)
    not_built: list[dt.date]  # skipped: a check of a date never built says nothing
    checks: list[str]
    results: list[quality.CheckResult] = field(default_factory=list)
    run_id: str | None = None
    dry_run: bool = False

    def counts(self) -> dict[str, int]:
        found = {status: 0 for status in ("pass", "warn", "fail", "error")}
        for result in self.results:
            found[result.status] += 1
        return found

    @property
    def ok(self) -> bool:
        counts = self.counts()
        return not counts["fail"] and not counts["error"]

    def to_dict(self) -> dict[str, Any]:
        return _json_safe(
            {
                "dates": str(self.dates),
                "run_id": self.run_id,
                "dry_run": self.dry_run,
                "checked": self.checked,
                "not_built": self.not_built,
                "checks": self.checks,
                "counts": self.counts(),
                "results": [asdict(r) for r in self.results],
            }
        )


def checks_with(
    services: OperatorServices,
    dates: DateRange,
    *,
    names: Sequence[str] = (),
    dry_run: bool = False,
    clock: Clock = _aware_utcnow,
) -> ChecksRun:
    """Re-run the data-quality checks (all, or ``names``) of the built dates of ``dates``."""
    refuse_future(dates, clock)
    checks = quality.checks_named(*names) if names else quality.CHECKS
    built = set(builder.recorded_versions(services.warehouse, dates.start, dates.end))
    checked = [d for d in dates.days() if d in built]
    not_built = [d for d in dates.days() if d not in built]
    check_names = [c.name for c in checks]
    if dry_run or not checked:
        return ChecksRun(dates, checked, not_built, check_names, dry_run=dry_run)
    run_id = new_run_id()
    with log_context(run_id=run_id, step=quality.QUALITY_STEP):
        results = quality.run_checks(
            services.warehouse, checked, run_id, clock(), services.settings, services.alerts, checks
        )
    return ChecksRun(dates, checked, not_built, check_names, results, run_id)


# ---- runs and alerts ---------------------------------------------------------------------------
def runs_with(
    services: OperatorServices,
    *,
    day: dt.date | None = None,
    step: str | None = None,
    status: str | None = None,
    limit: int = 50,
    clock: Clock = _aware_utcnow,
) -> list[dict[str, Any]]:
    """Recent pipeline steps from ops.pipeline_runs, newest first (JSON-safe rows)."""
    if day is not None:
        refuse_future([day], clock)
    return _json_safe(recent_runs(services.warehouse, day, limit, step=step, status=status))


def alerts_with(
    services: OperatorServices,
    *,
    day: dt.date | None = None,
    step: str | None = None,
    status: str | None = None,
    limit: int = 50,
    clock: Clock = _aware_utcnow,
) -> list[dict[str, Any]]:
    """Recent alert deliveries from ops.alert_deliveries, newest first (JSON-safe rows)."""
    if day is not None:
        refuse_future([day], clock)
    rows = alert_deliveries.recent_deliveries(services.warehouse, status=status, step=step, alert_date=day, limit=limit)
    return _json_safe(rows)
