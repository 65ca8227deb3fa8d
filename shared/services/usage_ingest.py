"""Product-usage ingestion: the timer tick, the raw landing, and staging from raw.

One tick (``run_usage_tick``) pulls the days ``shared.rules.dates.plan_pulls`` chooses and, for
each day, in this order:

1. pull every page (``UsageSource.fetch_day``; retries, rate limit and budget live in the client);
2. land the raw NDJSON at ``<RAW_CONTAINER>/date=YYYY-MM-DD/usage.ndjson`` (whole or not at all),
   then ``rejects.json`` when there are rejects, then ``manifest.json`` last: a manifest means the
   landing is complete;
3. stage from raw: read the NDJSON back (streaming), validate, bulk load the landing table, and in
   one transaction replace the day in ``stg.product_usage`` and its ``stg.usage_pulls`` row. The
   same function serves an operator's replay (``replay_from_raw``) without calling the API;
4. mark the usage input present with the content version (the gate re-opens the date only when the
   version changed);
5. record the watermark (PartitionKey ``usage_pull``, RowKey the date) in the state table.

A day's failure is alerted and does not stop the other days; an authentication failure or an
exhausted retry budget stops the run (every further request would fail the same way) and is
re-raised after the CRM grace check so the invocation shows as failed.

Overlapping runs (a second delivery of the tick, a slow run meeting the next one) are safe: the
raw blobs are replaced whole, staging verifies the NDJSON against the manifest's checksum, the
staging swap is one transaction, an unchanged version leaves the tables untouched, and a
watermark only moves forward in ``fetched_at``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from shared import telemetry
from shared.adapters.table_state import retry_on_conflict
from shared.adapters.usage_api import DayPull, UsageSource
from shared.clock import naive_utc
from shared.errors import (
    AuthenticationFailed,
    ConcurrencyConflict,
    PermanentError,
    RejectedInput,
    RetryBudgetExhausted,
)
from shared.logs import log_context, new_run_id, redact
from shared.rules.dates import PullPlan, plan_pulls, refuse_future_dates, utc_day_of
from shared.rules.usage_records import RecordScreen, ScreenResult
from shared.services import alert_deliveries, events_rollup, poison
from shared.services.alerts import new_alert
from shared.services.poison import RecoveryResources
from shared.services.resources import HasBlobs, HasReadiness, HasStateTable, HasUsageApi, StepResources
from shared.services.run_history import record_run

if TYPE_CHECKING:
    from shared.adapters.blob_store import BlobStore
    from shared.adapters.table_state import StateTable

log = logging.getLogger(__name__)

WATERMARK_PARTITION = "usage_pull"
SUCCEEDED, FAILED = "succeeded", "failed"  # watermark status: a failed row only until a success
STEP_PULL = "usage_pull"
STEP_STAGING = "usage_staging"
_LANDING_COLUMNS = ("load_id", "activity_date", "company_id", "active_users", "events", "source_blob")
_WATERMARK_WRITE_ATTEMPTS = 3


# ---- paths -----------------------------------------------------------------------------------
def raw_prefix(day: dt.date) -> str:
    return f"date={day.isoformat()}/"


def raw_ndjson_path(day: dt.date) -> str:
    return f"{raw_prefix(day)}usage.ndjson"


def raw_manifest_path(day: dt.date) -> str:
    return f"{raw_prefix(day)}manifest.json"


def raw_rejects_path(day: dt.date) -> str:
    return f"{raw_prefix(day)}rejects.json"


# ---- dependencies and results ----------------------------------------------------------------
class UsageResources(StepResources, HasBlobs, HasStateTable, HasReadiness, Protocol):
    """What ingestion reads and writes: the raw landing, staging, watermarks, the readiness gate."""


class TickResources(UsageResources, RecoveryResources, HasUsageApi, Protocol):
    """What the timer's tick needs: ingestion's resources, the API, and the recovery sweep's."""


PullStatus = Literal["staged", "unchanged", "failed", "not_attempted"]


@dataclass(frozen=True)
class StagedDate:
    activity_date: dt.date
    version: str
    rows: int
    changed: bool  # False: identical to what was staged, tables left untouched
    screen: ScreenResult = field(repr=False)


@dataclass
class DateOutcome:
    activity_date: dt.date
    status: PullStatus
    rows: int = 0
    version: str | None = None
    error: str | None = None


@dataclass
class TickResult:
    run_id: str
    plan: PullPlan
    outcomes: list[DateOutcome]
    grace_dates: list[dt.date] = field(default_factory=list)

    def by_status(self, status: PullStatus) -> list[dt.date]:
        return [o.activity_date for o in self.outcomes if o.status == status]


# ---- the tick --------------------------------------------------------------------------------
def run_usage_tick(now: dt.datetime, past_due: bool, resources: TickResources) -> TickResult:
    """The timer's entry point (via ``Resources.run_usage_tick``). ``past_due`` runs behave the
    same: the plan depends on the day and the watermarks, not on when the timer fired. The
    recovery sweep (shared/services/poison.py) runs after the pull whatever its outcome."""
    source = resources.usage_api.for_run()
    run_id = new_run_id()  # one run id for the tick's steps, the recovery sweep's included
    try:
        result = run_tick(now, source, resources, past_due=past_due, run_id=run_id)
    finally:
        recover_on_schedule(resources, now, run_id)
    # The daily slot also keeps the fact-events rollup fresh (SPEC 6); it never fails the tick.
    events_rollup.refresh_on_schedule(
        resources.warehouse,
        resources.alerts,
        resources.settings.pipeline_name,
        result.run_id,
        now,
        dt.timedelta(minutes=resources.settings.events_lookback_minutes),
    )
    # Alert deliveries that failed earlier are tried again on each tick (never fails the tick).
    alert_deliveries.retry_on_schedule(resources, now)
    return result


def recover_on_schedule(resources: RecoveryResources, now: dt.datetime, run_id: str | None = None) -> None:
    """No poison is final: re-stage, re-queue and clean up what failed before; never fails the tick."""
    try:
        poison.sweep(resources, now, run_id)
    except Exception as exc:
        log.error("the recovery sweep failed (%s: %s); the next tick retries it", type(exc).__name__, _safe(exc))


def run_tick(
    now: dt.datetime, source: UsageSource, deps: UsageResources, *, past_due: bool = False, run_id: str | None = None
) -> TickResult:
    run_id = run_id or new_run_id()
    with log_context(run_id=run_id, step=STEP_PULL):
        marks = load_watermarks(deps.state_table)
        plan = plan_pulls(
            utc_day_of(now),
            [d for d, m in marks.items() if m.get("status") != FAILED],
            failed=[d for d, m in marks.items() if m.get("status") == FAILED],
            lookback_days=deps.settings.usage_lookback_days,
            max_catchup_days=deps.settings.usage_max_catchup_days,
        )
        log.info("usage tick (past_due=%s) pulls %d dates: %s", past_due, len(plan.dates), _describe(plan))
        if plan.missed_beyond_bound:
            _alert_gap_beyond_bound(plan, deps, run_id)
        outcomes, fatal = _ingest_planned(plan, source, deps, run_id, now)
        result = TickResult(run_id, plan, outcomes)
        result.grace_dates = deps.readiness.check_grace_periods(now, run_id)
    if fatal is not None:
        raise fatal
    return result


def _ingest_planned(
    plan: PullPlan, source: UsageSource, deps: UsageResources, run_id: str, now: dt.datetime
) -> tuple[list[DateOutcome], PermanentError | None]:
    """Each planned date in turn; a date's failure does not stop the next date. The failures of
    one tick make one alert listing their dates (an outage failing ten dates is one incident)."""
    outcomes: list[DateOutcome] = []
    failures: list[tuple[dt.date, BaseException]] = []
    fatal: PermanentError | None = None
    for index, day in enumerate(plan.dates):
        with log_context(date=day.isoformat()):
            try:
                staged = ingest_date(day, source, deps, run_id, now)
            except (AuthenticationFailed, RetryBudgetExhausted) as exc:
                # Every further request would fail the same way: stop, and say which dates wait.
                log.error("usage for %s failed (%s); the run stops", day.isoformat(), type(exc).__name__)
                failures.append((day, exc))
                note_failed_pull(deps.state_table, day, exc, now, run_id)
                outcomes.append(DateOutcome(day, "failed", error=_safe(exc)))
                outcomes.extend(DateOutcome(d, "not_attempted") for d in plan.dates[index + 1 :])
                fatal = exc
                break
            except Exception as exc:
                log.exception("usage for %s failed", day.isoformat())
                failures.append((day, exc))
                note_failed_pull(deps.state_table, day, exc, now, run_id)
                outcomes.append(DateOutcome(day, "failed", error=_safe(exc)))
                continue
        status: PullStatus = "staged" if staged.changed else "unchanged"
        outcomes.append(DateOutcome(day, status, staged.rows, staged.version))
    if failures:
        _alert_failures(deps, run_id, failures, stopping=fatal is not None)
    return outcomes, fatal


def ingest_date(
    day: dt.date, source: UsageSource, deps: UsageResources, run_id: str, now: dt.datetime, *, force: bool = False
) -> StagedDate:
    """Pull (or replay) one day, land it raw, stage it from raw, mark it present, watermark it.
    ``force`` re-stages even when the recorded version equals the landed one (see replay)."""
    with record_run(deps.warehouse, step=STEP_PULL, run_id=run_id, run_date=day) as run:
        pull = source.fetch_day(day)
        try:
            run.rows_in = pull.records
            if not pull.from_raw:
                land_raw(pull, deps)
        finally:
            pull.close()
    staged = stage_from_raw(day, deps, run_id, now, force=force)
    deps.readiness.mark_input_present(day, "usage", staged.version, staged.rows, now, run_id)
    if not pull.from_raw:
        save_watermark(deps.state_table, day, pull.fetched_at, staged.version, staged.rows, run_id)
    return staged


# ---- raw landing -----------------------------------------------------------------------------
def land_raw(pull: DayPull, deps: UsageResources) -> dict[str, Any]:
    """NDJSON first, then the rejects report, then the manifest (whose presence means "complete").

    Returns the manifest. The NDJSON is written from the pull's spool in chunks; BlobStore.write
    commits it whole, so readers see the previous landing or this one, never a mix.
    """
    container = deps.settings.raw_container
    day = pull.activity_date
    deps.blobs.ensure_container(container)
    digest = hashlib.sha256()
    screen = RecordScreen(day)
    size = 0

    def tee(chunks: Iterable[bytes]) -> Iterator[bytes]:
        nonlocal size
        for chunk in chunks:
            digest.update(chunk)
            size += len(chunk)
            yield chunk

    deps.blobs.write(container, raw_ndjson_path(day), tee(pull.chunks()), content_type="application/x-ndjson")
    for line in iter_lines(pull.chunks()):
        screen.feed_line(line)
    result = screen.result()
    if result.rejected or result.conflicts:
        deps.blobs.write(
            container, raw_rejects_path(day), _json_bytes(result.report()), content_type="application/json"
        )
    else:
        deps.blobs.delete(container, raw_rejects_path(day))  # a re-pull without rejects: drop the old report
    manifest = {
        "date": day.isoformat(),
        "fetched_at": pull.fetched_at.isoformat(),
        "pages": pull.pages,
        "records": pull.records,
        "accepted": len(result.accepted),
        "rejects": result.rejected,
        "rejects_by_reason": result.rejects_by_reason,
        "duplicates": result.duplicates,
        "conflicts": result.conflicts,
        "api_total": pull.records,
        "request_ids": pull.request_ids,
        "ndjson": {"path": raw_ndjson_path(day), "sha256": digest.hexdigest(), "bytes": size},
    }
    deps.blobs.write(container, raw_manifest_path(day), _json_bytes(manifest), content_type="application/json")
    if result.rejected or result.conflicts:
        _alert_rejects(deps, day, result)
    return manifest


def read_manifest(blobs: BlobStore, container: str, day: dt.date) -> dict[str, Any] | None:
    if blobs.info(container, raw_manifest_path(day)) is None:
        return None
    return json.loads(blobs.read_bytes(container, raw_manifest_path(day)))


def iter_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Lines of a chunked byte stream, without holding more than one chunk and one line."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        yield from lines
    if pending:
        yield pending


class RawReplaySource:
    """A ``UsageSource`` that reads a landed day back instead of calling the API."""

    def __init__(self, blobs: BlobStore, container: str) -> None:
        self._blobs = blobs
        self._container = container

    def fetch_day(self, day: dt.date) -> DayPull:
        manifest = read_manifest(self._blobs, self._container, day)
        if manifest is None:
            raise PermanentError(f"no complete raw landing for {day.isoformat()} (no manifest); pull it first")
        return DayPull(
            activity_date=day,
            fetched_at=dt.datetime.fromisoformat(manifest["fetched_at"]),
            pages=int(manifest["pages"]),
            records=int(manifest["records"]),
            request_ids=list(manifest.get("request_ids", [])),
            chunks=lambda: self._blobs.iter_chunks(self._container, raw_ndjson_path(day)),
            from_raw=True,
        )


def replay_from_raw(
    day: dt.date, deps: UsageResources, run_id: str, now: dt.datetime, *, force: bool = False
) -> StagedDate:
    """Re-stage a day from its raw landing (operators, after a fix): no API call, no watermark.
    ``force``: the staged rows were found to differ from raw although the version matches.
    A future day is refused (FutureDateRefused): nothing can have landed for it legitimately."""
    refuse_future_dates([day], now)
    with log_context(run_id=run_id, step=STEP_STAGING, date=day.isoformat()):
        source = RawReplaySource(deps.blobs, deps.settings.raw_container)
        return ingest_date(day, source, deps, run_id, now, force=force)


# ---- staging from raw ------------------------------------------------------------------------
def stage_from_raw(
    day: dt.date, deps: UsageResources, run_id: str, now: dt.datetime, *, force: bool = False
) -> StagedDate:
    """Validate the landed NDJSON and swap it into stg.product_usage (unless unchanged)."""
    container = deps.settings.raw_container
    with record_run(deps.warehouse, step=STEP_STAGING, run_id=run_id, run_date=day) as run:
        manifest = read_manifest(deps.blobs, container, day)
        if manifest is None:
            raise PermanentError(f"raw landing for {day.isoformat()} is incomplete (no manifest)")
        result = screen_raw(deps.blobs, container, day, manifest)
        run.rows_in = result.received
        try:
            _refuse_if_too_many_rejects(result, deps.settings.usage_reject_threshold)
        except RejectedInput:
            telemetry.USAGE_ROWS_REJECTED.add(result.rejected)
            raise
        version = result.version()
        current = deps.warehouse.run("stg/product_usage__current_version", {"activity_date": day})
        if current and current[0]["content_hash"] == version and not force:
            log.info("usage for %s unchanged (version %s): staging left as is", day.isoformat(), version[:12])
            run.rows_out = 0
            return StagedDate(day, version, len(result.accepted), False, result)
        _swap_into_staging(result, manifest, deps, run_id, now)
        run.rows_out = len(result.accepted)
        telemetry.USAGE_ROWS_STAGED.add(len(result.accepted))
        telemetry.USAGE_ROWS_REJECTED.add(result.rejected)
    log.info("staged %d usage rows for %s (version %s)", len(result.accepted), day.isoformat(), version[:12])
    return StagedDate(day, version, len(result.accepted), True, result)


def screen_raw(blobs: BlobStore, container: str, day: dt.date, manifest: dict[str, Any]) -> ScreenResult:
    """Stream the NDJSON through the record screen, checking it is the one the manifest describes
    (a concurrent re-pull may have replaced one but not yet the other)."""
    digest = hashlib.sha256()
    screen = RecordScreen(day)

    def hashed(chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            digest.update(chunk)
            yield chunk

    for line in iter_lines(hashed(blobs.iter_chunks(container, raw_ndjson_path(day)))):
        screen.feed_line(line)
    expected = manifest.get("ndjson", {}).get("sha256")
    if expected and digest.hexdigest() != expected:
        raise ConcurrencyConflict(f"raw usage for {day.isoformat()} was replaced while staging; the newer pull wins")
    return screen.result()


def _refuse_if_too_many_rejects(result: ScreenResult, threshold: float) -> None:
    if result.received and result.reject_share > threshold:
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(result.rejects_by_reason.items()))
        raise RejectedInput(
            f"usage for {result.activity_date.isoformat()}: {result.rejected} of {result.received} records "
            f"rejected ({result.reject_share:.1%} > {threshold:.1%}; {reasons}; {result.describe_rejects()}); "
            "the staged day is left as it was. "
            f"Report: {raw_rejects_path(result.activity_date)}"
        )


def _swap_into_staging(
    result: ScreenResult, manifest: dict[str, Any], deps: UsageResources, run_id: str, now: dt.datetime
) -> None:
    day = result.activity_date
    raw_blob = f"{deps.settings.raw_container}/{raw_ndjson_path(day)}"
    rows = ((run_id, day, r.company_id, r.active_users, r.events, raw_blob) for r in result.accepted)
    try:
        deps.warehouse.bulk_load("stg.product_usage_landing", _LANDING_COLUMNS, rows)
        with deps.warehouse.transaction():
            deps.warehouse.run(
                "stg/product_usage__load",
                {
                    "load_id": run_id,
                    "activity_date": day,
                    "raw_blob": raw_blob,
                    "content_hash": result.version(),
                    "page_count": int(manifest["pages"]),
                    "api_record_count": int(manifest["records"]),
                    "rejected_record_count": result.rejected,
                    "duplicate_record_count": result.duplicates,
                    "conflicting_record_count": result.conflicts,
                    "fetched_at": dt.datetime.fromisoformat(manifest["fetched_at"]),
                    "ingested_at": naive_utc(now),
                    "run_id": run_id,
                },
            )
    except BaseException:
        deps.warehouse.run("stg/product_usage__discard_landing", {"load_id": run_id, "activity_date": day})
        raise


# ---- watermarks ------------------------------------------------------------------------------
def load_watermarks(state: StateTable) -> dict[dt.date, dict[str, Any]]:
    """Every day with a watermark: its entity (``status`` says whether the pull succeeded)."""
    marks: dict[dt.date, dict[str, Any]] = {}
    for entity in state.query(WATERMARK_PARTITION):
        try:
            marks[dt.date.fromisoformat(entity["RowKey"])] = entity
        except (KeyError, ValueError):
            log.warning("ignoring a malformed usage watermark row")
    return marks


def save_watermark(
    state: StateTable, day: dt.date, fetched_at: dt.datetime, version: str, rows: int, run_id: str
) -> bool:
    """Record the day's last successful pull; a pull older than the stored one never overwrites it
    (an overlapping slower run). Returns whether this pull became the watermark."""
    entity: dict[str, Any] = {
        "PartitionKey": WATERMARK_PARTITION,
        "RowKey": day.isoformat(),
        "status": SUCCEEDED,
        "fetched_at": fetched_at.isoformat(),
        "content_hash": version,
        "record_count": rows,
        "run_id": run_id,
    }

    def write_once() -> bool:
        existing = state.get(WATERMARK_PARTITION, day.isoformat())
        if existing is None:
            state.insert(entity)
            return True
        stored, etag = existing
        if stored.get("status") != FAILED and str(stored.get("fetched_at", "")) > entity["fetched_at"]:
            return False
        state.update_if_match(entity, etag)
        return True

    return retry_on_conflict(_WATERMARK_WRITE_ATTEMPTS, f"usage watermark for {day.isoformat()}")(write_once)


def note_failed_pull(state: StateTable, day: dt.date, exc: BaseException, now: dt.datetime, run_id: str) -> None:
    """Remember a day whose pull failed and that never succeeded, so the catch-up retries it even
    when it is older than every success (e.g. the first tick's look-back). Best effort: the alert
    already went out, and a day with a successful pull keeps its watermark."""
    entity = {
        "PartitionKey": WATERMARK_PARTITION,
        "RowKey": day.isoformat(),
        "status": FAILED,
        "failed_at": naive_utc(now).isoformat(),
        "error_type": type(exc).__name__,
        "run_id": run_id,
    }
    try:
        existing = state.get(WATERMARK_PARTITION, day.isoformat())
        if existing is None:
            state.insert(entity)
        elif existing[0].get("status") == FAILED:
            state.update_if_match(entity, existing[1])
    except Exception:
        log.warning("could not record the failed usage pull of %s", day.isoformat(), exc_info=True)


# ---- alerts ----------------------------------------------------------------------------------
def _alert_failures(
    deps: UsageResources, run_id: str, failures: list[tuple[dt.date, BaseException]], *, stopping: bool
) -> None:
    """One alert for the failed dates of one tick, naming each date and its cause."""
    types = sorted({type(exc).__name__ for _, exc in failures})
    if len(failures) == 1:
        exc = failures[0][1]
        title, message = f"usage ingestion failed: {type(exc).__name__}", _safe(exc)
    else:
        title = f"usage ingestion failed for {len(failures)} dates: {', '.join(types)}"
        message = "; ".join(f"{day.isoformat()}: {_safe(exc)[:200]}" for day, exc in failures)
    if stopping:
        message += " The run stopped; the remaining dates will be pulled by the next tick."
    else:
        message += " The failed dates are pulled again by the next tick."
    dates = [day for day, _ in failures]
    deps.alerts.send(
        new_alert(
            deps.settings.pipeline_name,
            STEP_PULL,
            "error",
            title,
            message,
            run_id=run_id,
            dates=dates,
            subject=f"usage {dates[0].isoformat()}..{dates[-1].isoformat()}",
            facts={"error_type": ", ".join(types), "dates": ", ".join(d.isoformat() for d in dates)},
        )
    )


def _alert_rejects(deps: UsageResources, day: dt.date, result: ScreenResult) -> None:
    deps.alerts.send(
        new_alert(
            deps.settings.pipeline_name,
            STEP_PULL,
            "warning",
            "usage records rejected or conflicting",
            f"{result.rejected} of {result.received} records rejected, {result.conflicts} conflicting repeats; "
            f"the other records are staged. Rejected: {result.describe_rejects() or 'none'}. "
            f"Report: {deps.settings.raw_container}/{raw_rejects_path(day)}",
            dates=[day],
            subject=f"{raw_ndjson_path(day)}@{result.version()[:16]}",
            facts={k: str(v) for k, v in sorted(result.rejects_by_reason.items())},
        )
    )


def _alert_gap_beyond_bound(plan: PullPlan, deps: UsageResources, run_id: str) -> None:
    gap = plan.missed_beyond_bound
    deps.alerts.send(
        new_alert(
            deps.settings.pipeline_name,
            STEP_PULL,
            "warning",
            "usage days missed beyond the catch-up bound",
            f"{len(gap)} days from {gap[0].isoformat()} to {gap[-1].isoformat()} have no usage pull and are "
            f"older than USAGE_MAX_CATCHUP_DAYS={deps.settings.usage_max_catchup_days}; backfill them with the CLI.",
            run_id=run_id,
        )
    )


# ---- small helpers ---------------------------------------------------------------------------
def _describe(plan: PullPlan) -> str:
    return ", ".join(f"{d.isoformat()} ({plan.reasons[d]})" for d in plan.dates)


def _safe(exc: BaseException) -> str:
    return redact(str(exc))[:1000] or type(exc).__name__


def _json_bytes(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, indent=2, sort_keys=True, default=str).encode()
