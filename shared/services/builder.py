"""Analytics builder (queue trigger): build messages in, analytics.company_daily_activity out.

A message names dates (``{"dates": [...]}``) or a range (``{"start": ..., "end": ...}``), with
an optional ``reason`` and ``force``. The builder
1. plans (pure, shared/rules/build_plan.py): the requested dates whose input versions differ
   from their last successful build (or all, with ``force``; none with ``affected_only``, whose
   dates are only origins of a change), plus every already-built date whose rolling windows
   they touch (D+1..D+WINDOW_DAYS-1), plus every built date whose CRM snapshot in force changed
   since its build (asked of the warehouse);
2. in ONE warehouse transaction: refreshes the derived usage tables (activity checkpoints,
   first usage) from the earliest changed usage date, adds the built dates after the windows
   whose last activity or "known since" moved, runs the build SQL once per contiguous range, or
   per piece of it when the engine's memory is capped (``Warehouse.build_piece_company_days``:
   a piece's company-days fit the cap; set based: MERGE on (activity_date, company_id), deleting
   companies that left the spine) and records the versions it built in ops.date_builds. The
   transaction holds every piece: a build commits whole or not at all, unless it writes more
   than the engine holds uncommitted (``Warehouse.build_transaction_company_days``): then it
   commits in date-ordered parts, each whole or not at all (see ``build``);
3. records the run in ops.pipeline_runs (step "build") and runs the data-quality checks.

A malformed message is logged, alerted and dropped (returning normally, so the host does not
retry it). Any other failure is raised so the host retries; on the delivery that will move the
message to ``<queue>-poison`` (host.json ``maxDequeueCount``) an alert says so first, and the
poisoning is recorded in ops.poison_events (the timer's sweep re-queues it once its dates are
still unbuilt or stale and the cause is gone).

Builds never invent rows: a message naming a date after yesterday (UTC) is refused whole with
one line (ops row ``refused``, not retried, nothing written). A message that is not forced builds
only the dates whose inputs exist as the readiness gate defines them (usage present; CRM
present or its grace period over); the others are skipped, logged and recorded (``skipped``),
not failed: their own input arrival queues them. A forced message (an operator's rebuild)
builds any date that is not in the future.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from shared import telemetry
from shared.adapters.warehouse.base import Warehouse
from shared.clock import Clock, utc_now
from shared.errors import FutureDateRefused, MalformedMessage
from shared.host_config import queue_config
from shared.logs import log_context, new_run_id, redact
from shared.rules.build_plan import (
    WINDOW_DAYS,
    BuildPlan,
    BuildRequest,
    InputVersions,
    add_crm_reach,
    checkpoint_refresh_from,
    contiguous_ranges,
    extend_beyond_window,
    group_ranges,
    parse_build_request,
    plan_build,
    split_ranges,
)
from shared.rules.dates import as_date as _as_date
from shared.rules.dates import describe_dates as _describe_dates
from shared.rules.dates import refuse_future_dates
from shared.services import quality
from shared.services.alerts import Alert, AlertSink, new_alert
from shared.services.resources import HasReadiness, StepResources
from shared.services.run_history import record_run

log = logging.getLogger(__name__)

STEP = "build"
_BUILD_SQL = "analytics/company_daily_activity__build"
_BEYOND_WINDOW_SQL = "analytics/company_daily_activity__dates_beyond_window"
_CRM_REACH_SQL = "ops/date_builds__crm_snapshot_changed"
_SPINE_SIZE_SQL = "analytics/company_daily_activity__spine_size"
_ROWS_IN_RANGE_SQL = "analytics/company_daily_activity__any_row_in_range"


class VersionSource(Protocol):
    """Where the builder learns each date's current input versions (the readiness gate)."""

    def input_versions(self, dates: Sequence[dt.date]) -> Mapping[dt.date, InputVersions]: ...

    def record_build(self, built: Mapping[dt.date, InputVersions], run_id: str, now: dt.datetime) -> None: ...


class BuilderResources(StepResources, HasReadiness, Protocol):
    """What a build reads: the gate's input versions, the warehouse it builds in, whom to alert."""


@dataclass(frozen=True)
class BuildOutcome:
    run_id: str
    plan: BuildPlan
    rows_written: int  # rows of the rebuilt dates after the build
    seconds: float

    @property
    def skipped(self) -> bool:
        return not self.plan.targets


# ---- entry point --------------------------------------------------------------------------
def handle_build_message(
    body: bytes, dequeue_count: int, resources: BuilderResources, *, message_id: str | None = None
) -> BuildOutcome | None:
    """Process one queue message (see module doc). None when the message was malformed or named a
    future date; a skipped outcome (no targets) when none of its dates has inputs yet."""
    run_id = new_run_id()
    pipeline = resources.settings.pipeline_name
    with log_context(run_id=run_id, step=STEP):
        try:
            request = decode_build_message(body)
        except MalformedMessage as exc:
            reject_malformed(exc, resources.alerts, pipeline, run_id)
            return None
        telemetry.link_to(request.traceparent)
        with log_context(date=_describe_dates(request.dates)):
            telemetry.set_attributes(
                activity_date=_describe_dates(request.dates), step=STEP, affected_only=request.affected_only
            )
            now = utc_now()
            try:
                refuse_future_dates(request.dates, now)
            except FutureDateRefused as exc:
                refuse_future(exc, request, resources, run_id)
                return None
            # An affected-only message is sent precisely because its dates cannot be built yet:
            # it rebuilds the built days their changed inputs reach, never the dates themselves.
            if not request.force and not request.affected_only:
                remaining = skip_dates_without_inputs(request, resources, run_id, now)
                if remaining is None:
                    return BuildOutcome(run_id, BuildPlan((), (), ()), 0, 0.0)
                request = remaining
            try:
                outcome = build(
                    request,
                    warehouse=resources.warehouse,
                    versions=resources.readiness,
                    run_id=run_id,
                )
            except Exception as exc:
                if alert_if_poisoned(
                    exc,
                    dequeue_count,
                    request,
                    resources.alerts,
                    pipeline,
                    run_id,
                    warehouse=resources.warehouse,
                    message_id=message_id,
                    queue=resources.settings.build_queue,
                ):
                    telemetry.POISON_MESSAGES.add(1, {"queue": f"{resources.settings.build_queue}-poison"})
                raise
            if outcome.plan.targets:
                run_post_build(resources, outcome.plan.targets, run_id)
            else:
                # Nothing to rebuild, but a build counts as done only once its checks ran: a
                # redelivery after a crash between the commit and the checks runs them now.
                unchecked = dates_built_without_checks(resources.warehouse, request.dates)
                if unchecked:
                    run_post_build(resources, unchecked, run_id)
            return outcome


def refuse_future(exc: FutureDateRefused, request: BuildRequest, resources: BuilderResources, run_id: str) -> None:
    """One line, one ops row, one alert; never retried (a future date stays future for hours)."""
    log.error("build refused, nothing written: %s", exc)
    with record_run(resources.warehouse, step=STEP, run_id=run_id, run_date=request.dates[0]) as run:
        run.status = "refused"
        run.error_message = f"FutureDateRefused: {exc}"
    _send(
        resources.alerts,
        new_alert(
            resources.settings.pipeline_name,
            STEP,
            "warning",
            "Build of a future date refused",
            f"{exc}. The message ({_describe_dates(request.dates)}) was dropped; nothing was built.",
            run_id=run_id,
            subject=f"build {_describe_dates(request.dates)}",
        ),
    )


def skip_dates_without_inputs(
    request: BuildRequest, resources: BuilderResources, run_id: str, now: dt.datetime
) -> BuildRequest | None:
    """The request without the dates whose inputs do not exist yet (None when that is all of
    them). Skipped dates are logged and recorded; their own input arrival will queue them."""
    lacking = resources.readiness.lacking_inputs(request.dates, now)
    if not lacking:
        return request
    note = f"no inputs yet (usage present; CRM present or grace over) for {_describe_dates(lacking)}: not built"
    log.warning("build of %s skipped: %s", _describe_dates(lacking), note)
    with record_run(resources.warehouse, step=STEP, run_id=run_id, run_date=lacking[0]) as run:
        run.status = "skipped"
        run.error_message = note
    remaining = tuple(d for d in request.dates if d not in set(lacking))
    if not remaining:
        return None
    return dataclasses.replace(request, dates=remaining)


def decode_build_message(body: bytes) -> BuildRequest:
    """JSON bytes → a validated request; MalformedMessage for anything else."""
    try:
        payload = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedMessage(f"build message is not UTF-8 JSON ({type(exc).__name__})") from None
    return parse_build_request(payload)


def reject_malformed(exc: MalformedMessage, alerts: AlertSink, pipeline: str, run_id: str) -> None:
    """Never retried: retrying a message that cannot parse only delays the poison queue."""
    log.error("build message rejected, not retried: %s", exc)
    _send(
        alerts,
        new_alert(
            pipeline,
            STEP,
            "error",
            "Malformed build message rejected",
            f"{exc}. The message was dropped (not retried); send a corrected one to rebuild.",
            run_id=run_id,
        ),
    )


def alert_if_poisoned(
    exc: BaseException,
    dequeue_count: int,
    request: BuildRequest,
    alerts: AlertSink,
    pipeline: str,
    run_id: str,
    *,
    warehouse: Warehouse | None = None,
    message_id: str | None = None,
    queue: str = "",
) -> bool:
    """On the last delivery the host allows, the message is about to land in the poison queue:
    record it in ops.poison_events and alert once (the subject is the dates it asks for, so a
    re-queued message that poisons again within the window does not alert twice). Returns
    whether it is."""
    max_dequeue = queue_config().max_dequeue_count
    if dequeue_count < max_dequeue:
        log.warning(
            "build failed on delivery %d of %d (%s); the host will retry",
            dequeue_count,
            max_dequeue,
            type(exc).__name__,
        )
        return False
    log.error("build failed on delivery %d of %d: moved to poison", dequeue_count, max_dequeue)
    dates = _describe_dates(request.dates)
    cause = f"{type(exc).__name__}: {redact(str(exc))[:300]}"
    if warehouse is not None:
        try:
            warehouse.run(
                "ops/poison_events__record",
                {
                    "subject": f"build {dates}",
                    "kind": "build",
                    "source_queue": f"{queue}-poison",
                    "dates": dates[:400],
                    "date_from": request.dates[0],
                    "date_to": request.dates[-1],
                    "detected_at": utc_now(),
                    "run_id": run_id,
                    "note": f"message {message_id or '?'}: {cause}"[:2000],
                },
            )
        except Exception as record_error:  # often the same outage: the alert must still go out
            log.error("could not record the poisoned build in ops (%s)", type(record_error).__name__)
    _send(
        alerts,
        new_alert(
            pipeline,
            STEP,
            "error",
            "Build message moved to poison",
            f"Building {dates} failed {dequeue_count} times ({cause}); the message goes to the poison queue. "
            "The timer's sweep re-queues it once the cause is gone, if its dates are still unbuilt or stale "
            "(or: poison requeue).",
            run_id=run_id,
            dates=request.dates,
            subject=f"build {dates}",
            facts={"dates": dates, "dequeue_count": str(dequeue_count), "message id": message_id or "?"},
        ),
    )
    return True


def run_post_build(resources: BuilderResources, dates: Sequence[dt.date], run_id: str) -> None:
    """Data-quality checks after a committed build; they never undo or fail the build."""
    try:
        quality.run_checks(resources.warehouse, dates, run_id, utc_now(), resources.settings, resources.alerts)
    except Exception as exc:
        log.error("data-quality checks after the build failed (%s)", type(exc).__name__)
        _send(
            resources.alerts,
            new_alert(
                resources.settings.pipeline_name,
                "quality",
                "error",
                "Data-quality checks could not run after a build",
                f"{type(exc).__name__}: {redact(str(exc))[:300]}",
                run_id=run_id,
            ),
        )


# ---- the build ------------------------------------------------------------------------------
def build(
    request: BuildRequest,
    *,
    warehouse: Warehouse,
    versions: VersionSource,
    run_id: str,
    clock: Clock = utc_now,
) -> BuildOutcome:
    """Plan, then build every target range in one transaction, recording the run in ops.

    A build larger than the engine's transaction budget (``Warehouse.build_transaction_company_days``)
    commits in consecutive parts instead, in date order, each all-or-nothing with its own
    ops.date_builds records: a failure leaves the parts before it committed and recorded, the rest
    untouched, and the redelivered message builds what is still not up to date.
    """
    started = time.monotonic()
    loaded_at = clock()
    window_to = request.dates[-1] + dt.timedelta(days=WINDOW_DAYS - 1)
    built = recorded_versions(warehouse, request.dates[0], window_to)
    current = dict(versions.input_versions(_days(request.dates[0], window_to)))
    plan = plan_build(request.dates, current, built, force=request.force, affected_only=request.affected_only)
    plan = extend_to_crm_reach(plan, warehouse, built)
    run_date = request.dates[0] if len(request.dates) == 1 else None
    with record_run(warehouse, step=STEP, run_id=run_id, run_date=run_date, clock=clock) as run:
        if not plan.changed and not plan.targets:
            return _skipped(run, plan, started)
        with warehouse.transaction():
            # Refresh first: which later days a change reaches is read from fresh derived tables.
            refresh_derived_usage(warehouse, max(plan.targets or plan.changed), run_id=run_id, loaded_at=loaded_at)
            plan = extend_to_later_dates(plan, warehouse, versions, current, built)
            if not plan.targets:
                return _skipped(run, plan, started)
            _log_plan(plan, request)
            target_versions = versions_to_record(plan, current, built)
            piece_days, part_days = build_budgets(warehouse, plan.ranges)
            first, *later = group_ranges(plan.ranges, part_days)
            rows = build_ranges(
                warehouse,
                first,
                _within(target_versions, first),
                run_id=run_id,
                loaded_at=loaded_at,
                piece_days=piece_days,
            )
        for part in later:  # only when the build exceeds one transaction's budget
            log.info("committed the build up to %s; next part %s..%s", first[-1][1], part[0][0], part[-1][1])
            rows += build_ranges(
                warehouse,
                part,
                _within(target_versions, part),
                run_id=run_id,
                loaded_at=loaded_at,
                piece_days=piece_days,
            )
            first = part
        run.rows_out = rows
    try:
        versions.record_build(target_versions, run_id, loaded_at)
    except Exception as exc:  # the warehouse is the truth; the gate's status is informative
        log.warning("could not record the build status in the readiness state (%s)", type(exc).__name__)
    seconds = time.monotonic() - started
    telemetry.BUILD_ROWS_WRITTEN.add(rows)
    telemetry.BUILD_DURATION.record(seconds)
    telemetry.BUILD_SUCCEEDED.add(1)
    log.info("built %d rows for %d date(s) in %.2f s", rows, len(plan.targets), seconds)
    return BuildOutcome(run_id, plan, rows, seconds)


def _skipped(run: Any, plan: BuildPlan, started: float) -> BuildOutcome:
    run.status = "skipped"
    if plan.affected_only:
        log.info("build skipped: the change of %s reaches no built date", _describe_dates(plan.changed))
    else:
        log.info("build skipped: the inputs of %s are unchanged since their build", _describe_dates(plan.unchanged))
    return BuildOutcome(run.run_id, plan, 0, time.monotonic() - started)


def _log_plan(plan: BuildPlan, request: BuildRequest) -> None:
    log.info(
        "building %d date(s) in %d range(s): %d changed%s, %d window neighbours, %d after the windows, "
        "%d with a changed CRM snapshot, %d unchanged skipped (%s)",
        len(plan.targets),
        len(plan.ranges),
        len(plan.changed),
        " (origins only, not rebuilt themselves)" if plan.affected_only else "",
        len(plan.neighbours),
        len(plan.beyond_window),
        len(plan.crm_reach),
        len(plan.unchanged),
        request.reason or "no reason given",
    )


def build_ranges(
    warehouse: Warehouse,
    ranges: Sequence[tuple[dt.date, dt.date]],
    versions: Mapping[dt.date, InputVersions],
    *,
    run_id: str,
    loaded_at: dt.datetime,
    piece_days: int | None = None,
) -> int:
    """The warehouse part of a build, atomically: refresh derived usage, build, record versions.

    Each range is built in pieces of at most ``piece_days`` days (None: whole; see
    ``build_budgets``), all inside this one transaction: the ranges given commit whole or not at all.
    Returns the number of analytics rows of the rebuilt dates.
    """
    date_to = max(end for _, end in ranges)
    with warehouse.transaction():
        refresh_derived_usage(warehouse, date_to, run_id=run_id, loaded_at=loaded_at)
        for date_from, piece_to in split_ranges(ranges, piece_days):
            piece_started = time.monotonic()
            warehouse.run(
                _BUILD_SQL,
                {"date_from": date_from, "date_to": piece_to, "run_id": run_id, "loaded_at": loaded_at},
                new_keys_only=not holds_rows(warehouse, date_from, piece_to),
            )
            log.info("built %s..%s in %.2f s", date_from, piece_to, time.monotonic() - piece_started)
        warehouse.run("ops/date_builds__discard_landing", {"run_id": run_id})
        warehouse.bulk_load(
            "ops.date_builds_landing",
            ("run_id", "activity_date", "crm_version", "usage_version"),
            ((run_id, d, v.crm_version, v.usage_version) for d, v in sorted(versions.items())),
        )
        warehouse.run("ops/date_builds__record", {"run_id": run_id, "built_at": loaded_at})
        warehouse.run("ops/date_builds__discard_landing", {"run_id": run_id})
        first = min(start for start, _ in ranges)
        return sum(
            int(row["row_count"])
            for row in warehouse.run("ops/date_builds__for_range", {"date_from": first, "date_to": date_to})
            if row["activity_date"] in versions
        )


def holds_rows(warehouse: Warehouse, date_from: dt.date, date_to: dt.date) -> bool:
    """Whether analytics holds any row of the range. A range without (the daily build; dates
    never built) is written by the build SQL's INSERT branch instead of its MERGE: the same rows
    for less (no join with the target, no comparison of the matched branch)."""
    return bool(warehouse.run(_ROWS_IN_RANGE_SQL, {"date_from": date_from, "date_to": date_to}))


def build_budgets(warehouse: Warehouse, ranges: Sequence[tuple[dt.date, dt.date]]) -> tuple[int | None, int | None]:
    """Days one run of the build SQL may cover and days one transaction may write, on this engine
    (None: any number), from one cheap count of the ranges' spine on the dim and usage."""
    total = sum((end - start).days + 1 for start, end in ranges)
    budgets = (warehouse.build_piece_company_days, warehouse.build_transaction_company_days)
    if total == 1 or budgets == (None, None):
        return None, None
    first, last = min(start for start, _ in ranges), max(end for _, end in ranges)
    companies = int(warehouse.run(_SPINE_SIZE_SQL, {"date_from": first, "date_to": last})[0]["companies"] or 0)

    def days_within(budget: int | None) -> int | None:
        if budget is None:
            return None
        days = max(1, budget // max(companies, 1))
        return None if days >= total else days

    piece_budget, transaction_budget = budgets
    return days_within(piece_budget), days_within(transaction_budget)


def _within(
    versions: Mapping[dt.date, InputVersions], ranges: Sequence[tuple[dt.date, dt.date]]
) -> dict[dt.date, InputVersions]:
    return {d: v for d, v in versions.items() if any(start <= d <= end for start, end in ranges)}


def refresh_derived_usage(warehouse: Warehouse, date_to: dt.date, *, run_id: str, loaded_at: dt.datetime) -> None:
    """Bring the activity checkpoints and first-usage dates in step with staged usage.

    Refreshes from the earliest usage date whose pull changed since the last refresh (however
    it was staged, in whatever order), so a build never reads derived tables older than staging.
    """
    status = warehouse.run("stg/company_activity_refreshed_pulls__status")[0]
    stale_from, last_checkpoint = status["stale_from"], status["last_checkpoint_date"]
    refresh_from = checkpoint_refresh_from(
        stale_from,
        last_checkpoint,
        date_to,
        first_pull=status["first_pull_date"],
        last_pull=status["last_pull_date"],
    )
    if refresh_from is not None:
        warehouse.run(
            "stg/company_activity_checkpoints__refresh", {"refresh_from": refresh_from, "refresh_to": date_to}
        )
    if stale_from is not None:
        warehouse.run("stg/company_first_usage__refresh", {"refresh_from": stale_from})
        warehouse.run("stg/company_activity_refreshed_pulls__record", {"run_id": run_id, "refreshed_at": loaded_at})
        log.info("refreshed activity checkpoints and first usage from %s", stale_from)


def extend_to_later_dates(
    plan: BuildPlan,
    warehouse: Warehouse,
    versions: VersionSource,
    current: dict[dt.date, InputVersions],
    built: dict[dt.date, InputVersions],
) -> BuildPlan:
    """Add the built dates after the windows whose rows a changed date still reaches, and learn
    their versions (``current`` and ``built`` are filled in place)."""
    later = dates_beyond_window(warehouse, plan.changed)
    if not later:
        return plan
    plan = extend_beyond_window(plan, later)
    built.update(recorded_versions(warehouse, later[0], later[-1]))
    current.update(versions.input_versions(plan.beyond_window))
    log.info("a change reaches %d built date(s) after its windows (last/first activity moved)", len(later))
    return plan


def versions_to_record(
    plan: BuildPlan, current: Mapping[dt.date, InputVersions], built: Mapping[dt.date, InputVersions]
) -> dict[dt.date, InputVersions]:
    """The input versions ops.date_builds records for each target.

    A changed date records its current versions. A date rebuilt only as a neighbour keeps the
    versions of its own last build: if its own inputs changed too, its own message must still
    see the difference, or the dates in *its* window would never be rebuilt.
    """
    changed = set(plan.rebuilt_changed)
    return {d: current.get(d, InputVersions()) if d in changed else built.get(d, InputVersions()) for d in plan.targets}


def extend_to_crm_reach(plan: BuildPlan, warehouse: Warehouse, built: dict[dt.date, InputVersions]) -> BuildPlan:
    """Add the built dates whose CRM snapshot in force changed since their build (``built`` is
    filled in place with their versions, which they keep: their own inputs did not change)."""
    rows = warehouse.run(_CRM_REACH_SQL)
    if not rows:
        return plan
    stale = {_as_date(row["activity_date"]): InputVersions(row["crm_version"], row["usage_version"]) for row in rows}
    built.update(stale)
    log.info("a changed CRM snapshot reaches %d built date(s)", len(stale))
    return add_crm_reach(plan, stale)


def dates_beyond_window(warehouse: Warehouse, changed: Sequence[dt.date]) -> list[dt.date]:
    """Built dates after the windows (D+WINDOW_DAYS on) whose days_since_last_activity or churn
    depend on a changed D.

    Cheap in daily operation: for recent changes no built date lies beyond their windows.
    """
    found: set[dt.date] = set()
    for changed_from, changed_to in contiguous_ranges(changed):
        rows = warehouse.run(
            _BEYOND_WINDOW_SQL, {"changed_from": changed_from, "changed_to": changed_to, "window_days": WINDOW_DAYS}
        )
        found.update(_as_date(row["activity_date"]) for row in rows)
    return sorted(found)


def dates_built_without_checks(warehouse: Warehouse, dates: Sequence[dt.date]) -> list[dt.date]:
    """Built dates of ``dates`` with no full data-quality check run since their last build."""
    wanted = set(dates)
    rows = warehouse.run("ops/date_status__builds", {"date_from": min(dates), "date_to": max(dates)})
    return [
        _as_date(row["activity_date"])
        for row in rows
        if row["run_id"] is not None and _as_date(row["activity_date"]) in wanted and not row["checks_ran"]
    ]


def recorded_versions(warehouse: Warehouse, date_from: dt.date, date_to: dt.date) -> dict[dt.date, InputVersions]:
    """The versions of the last successful build of each built date in the range."""
    rows = warehouse.run("ops/date_builds__for_range", {"date_from": date_from, "date_to": date_to})
    return {_as_date(row["activity_date"]): InputVersions(row["crm_version"], row["usage_version"]) for row in rows}


# ---- small helpers ---------------------------------------------------------------------------
def _days(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def _send(alerts: AlertSink, alert: Alert) -> None:
    """Alerting never fails the step that alerts."""
    try:
        alerts.send(alert)
    except Exception as exc:
        log.error("alert %r could not be sent (%s)", alert.title, type(exc).__name__)
