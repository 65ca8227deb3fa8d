"""No poison is final: list, re-queue and automatically recover what failed past its retries.

Three things can fail past the host's retries:
- a CRM blob version: the blob trigger gives up after ``maxDequeueCount`` attempts and puts a
  message on ``webjobs-blobtrigger-poison`` (the host's name; the same ETag never fires again);
- a build message: moved to ``<BUILD_QUEUE>-poison``;
- a usage day: its failed pull is retried by the next tick already (shared.rules.dates).

``sweep`` runs on every timer tick (after the usage pull) and, once the cause is gone:
1. marks killed runs abandoned and removes their landing rows (run_history);
2. turns each blob-poison message into an ops.poison_events row and one alert (subject: the
   blob and its ETag), then removes the message (ops holds it now);
3. stages every CRM blob whose current version (ETag) was never processed: no row in
   ops.crm_blob_versions, and no staged snapshot or quarantine record newer than the blob
   (which also covers files processed before those records existed). A blob younger than
   ``SWEEP_MIN_AGE`` is left to its own trigger;
4. re-queues each poisoned build message whose dates are still unbuilt or stale, and closes the
   others (already built by other means). Every outcome is recorded and logged.

Operators do the same by hand with ``poison list`` and ``poison requeue`` (pipeline_tools/cli.py).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from shared.adapters.queue_store import QueueStore, ReceivedMessage
from shared.adapters.storage_common import StorageNotFound
from shared.clock import naive_utc, utc_now
from shared.errors import MalformedMessage
from shared.host_config import queue_config
from shared.logs import log_context, new_run_id, redact
from shared.rules.build_plan import BuildRequest, parse_build_request, plan_build
from shared.rules.dates import describe_dates
from shared.services import crm_staging
from shared.services.alerts import new_alert, send_safely
from shared.services.builder import recorded_versions
from shared.services.resources import HasBlobs, HasQueues, HasReadiness, HasSettings, StepResources
from shared.services.run_history import DebrisReport, record_run, recover_abandoned_runs

if TYPE_CHECKING:
    from shared.adapters.warehouse.base import Warehouse
    from shared.settings import Settings

log = logging.getLogger(__name__)

# The Functions host's queue for blob-trigger poison messages (in the blob's storage account).
BLOB_POISON_QUEUE = "webjobs-blobtrigger-poison"
STEP = "recovery"
# A blob this young may simply not have been seen by its trigger yet (the polling source lags).
SWEEP_MIN_AGE = dt.timedelta(minutes=10)
_RECEIVE_BATCHES = 20  # at most 20 x 32 messages per queue and sweep
_HIDE_S = 300  # a message being handled is hidden this long; a crash makes it visible again

Kind = Literal["crm_blob", "build", "unreadable"]


class PoisonQueues(HasSettings, HasQueues, Protocol):
    """What listing the poison queues reads."""


class RecoveryResources(StepResources, HasBlobs, HasReadiness, HasQueues, Protocol):
    """What re-queuing and the sweep need. A CRM blob is staged through the blob trigger's own
    entry point, so a recovered file is staged exactly as its trigger would have."""

    def stage_crm_blob(self, blob_name: str) -> crm_staging.StagingResult: ...


@dataclass(frozen=True)
class PoisonItem:
    """One message of a poison queue, decoded."""

    queue: str
    message_id: str
    kind: Kind
    subject: str  # "crm <container>/<blob>@<etag>" or "build <dates>"
    dates: tuple[dt.date, ...]
    inserted_on: dt.datetime | None
    detail: str
    request: BuildRequest | None = field(default=None, repr=False, compare=False)
    blob: tuple[str, str, str] | None = field(default=None, repr=False, compare=False)  # container, name, etag

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("request")
        out.pop("blob")
        out["dates"] = [d.isoformat() for d in self.dates]
        out["inserted_on"] = self.inserted_on.isoformat() if self.inserted_on else None
        return out


@dataclass(frozen=True)
class Outcome:
    """What was (or, in a dry run, would be) done with one poisoned input."""

    subject: str
    action: Literal["requeued", "staged", "recovered", "dropped", "kept", "failed"]
    note: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass
class SweepResult:
    run_id: str
    debris: DebrisReport | None = None
    outcomes: list[Outcome] = field(default_factory=list)


# ---- reading the poison queues -----------------------------------------------------------------
def poison_queues(settings: Settings) -> tuple[str, str]:
    return BLOB_POISON_QUEUE, f"{settings.build_queue}-poison"


def list_poison(resources: PoisonQueues) -> list[PoisonItem]:
    """Every visible message of both poison queues (read only), oldest first."""
    items = []
    for name in poison_queues(resources.settings):
        queue = resources.queue(name)
        items += [describe(queue, message) for message in queue.peek_messages()]
    return sorted(items, key=lambda i: (i.inserted_on or dt.datetime.min.replace(tzinfo=dt.UTC), i.message_id))


def describe(queue: QueueStore, message: ReceivedMessage) -> PoisonItem:
    """Decode one poison message: a blob-trigger one (the host's JSON) or a build message."""
    try:
        payload = json.loads(queue.body(message).decode("utf-8"))
    except (MalformedMessage, UnicodeDecodeError, json.JSONDecodeError):
        return _unreadable(queue, message, "not JSON in the queue's encoding")
    if isinstance(payload, dict) and payload.get("Type") == "BlobTrigger":
        container, name, etag = (str(payload.get(k, "")) for k in ("ContainerName", "BlobName", "ETag"))
        day = crm_staging.snapshot_date_from_name(name, r"(\d{4}-\d{2}-\d{2})")
        return PoisonItem(
            queue.name,
            message.id,
            "crm_blob",
            blob_subject(container, name, etag),
            (day,) if day else (),
            message.inserted_on,
            f"blob {container}/{name} (ETag {etag})",
            blob=(container, name, etag),
        )
    try:
        request = parse_build_request(payload)
    except MalformedMessage as exc:
        return _unreadable(queue, message, str(exc))
    described = describe_dates(request.dates)
    return PoisonItem(
        queue.name,
        message.id,
        "build",
        f"build {described}",
        request.dates,
        message.inserted_on,
        f"build {described}{' (forced)' if request.force else ''}: {request.reason or 'no reason given'}",
        request=request,
    )


def blob_subject(container: str, name: str, etag: str) -> str:
    return f"crm {container}/{name}@{etag.strip(chr(34))}"


def _unreadable(queue: QueueStore, message: ReceivedMessage, why: str) -> PoisonItem:
    return PoisonItem(queue.name, message.id, "unreadable", f"message {message.id}", (), message.inserted_on, why[:300])


# ---- the operator's requeue -----------------------------------------------------------------
def requeue(
    resources: RecoveryResources,
    *,
    message_ids: Sequence[str] = (),
    dry_run: bool = False,
    now: dt.datetime | None = None,
    run_id: str | None = None,
) -> list[Outcome]:
    """Retry poisoned inputs now, whatever their state: build messages go back to the build
    queue, blob versions are staged inline (their trigger never fires again for that ETag).
    Only ``message_ids`` when given; unreadable messages are left for inspection."""
    now = now or utc_now()
    run_id = run_id or new_run_id()
    wanted = set(message_ids)
    outcomes: list[Outcome] = []
    with log_context(run_id=run_id, step=STEP):
        for name in poison_queues(resources.settings):
            queue = resources.queue(name)
            if dry_run:
                for item in (describe(queue, m) for m in queue.peek_messages()):
                    if not wanted or item.message_id in wanted:
                        outcomes.append(Outcome(item.subject, _planned_action(item), "dry run: nothing changed"))
                continue
            for message in _receive_all(queue):
                item = describe(queue, message)
                if wanted and item.message_id not in wanted:
                    queue.update_visibility(message, 0)  # not ours: visible again at once
                    continue
                outcomes.append(_retry_now(resources, queue, message, item, now, run_id))
    return outcomes


def _planned_action(item: PoisonItem) -> Literal["requeued", "staged", "kept"]:
    return {"build": "requeued", "crm_blob": "staged"}.get(item.kind, "kept")  # type: ignore[return-value]


def _retry_now(
    resources: RecoveryResources,
    queue: QueueStore,
    message: ReceivedMessage,
    item: PoisonItem,
    now: dt.datetime,
    run_id: str,
) -> Outcome:
    if item.kind == "build":
        _record(resources, item, now, run_id, "operator requeue")
        resources.queue(resources.settings.build_queue).send_text(message.text)
        queue.delete(message)
        _resolve(resources, item.subject, "requeued", now, run_id, "re-queued by an operator")
        log.info("recovered: %s re-queued by an operator", item.subject)
        return Outcome(item.subject, "requeued", "sent back to the build queue")
    if item.kind == "crm_blob":
        _record(resources, item, now, run_id, "operator requeue")
        outcome = _stage_blob(resources, item.blob[1] if item.blob else "", now, run_id)
        if outcome.action != "failed":
            queue.delete(message)
            _resolve(resources, item.subject, "recovered", now, run_id, outcome.note)
        else:
            queue.update_visibility(message, 0)
        return Outcome(item.subject, outcome.action, outcome.note)
    queue.update_visibility(message, 0)
    return Outcome(item.subject, "kept", f"unreadable ({item.detail}); inspect it and delete it by hand")


# ---- the sweep --------------------------------------------------------------------------------
def sweep(resources: RecoveryResources, now: dt.datetime, run_id: str | None = None) -> SweepResult:
    """The timer's recovery pass (see module doc). Each part is independent: one failing is
    logged and the others still run."""
    result = SweepResult(run_id or new_run_id())
    settings = resources.settings
    with (
        log_context(run_id=result.run_id, step=STEP),
        record_run(resources.warehouse, step=STEP, run_id=result.run_id) as run,
    ):
        result.debris = recover_abandoned_runs(
            resources.warehouse,
            resources.alerts,
            pipeline=settings.pipeline_name,
            lease=dt.timedelta(minutes=settings.run_lease_minutes),
            now=now,
            run_id=result.run_id,
        )
        poisoned: set[str] = set()  # blob names the trigger gave up on: no need to wait for it
        for part in (_absorb_blob_poison, _stage_unprocessed_blobs, _recover_builds):
            try:
                result.outcomes += part(resources, now, result.run_id, poisoned)
            except Exception as exc:
                log.error("recovery step %s failed (%s: %s)", part.__name__, type(exc).__name__, redact(str(exc)))
        run.rows_out = sum(o.action in ("requeued", "staged", "recovered") for o in result.outcomes)
    for outcome in result.outcomes:
        log.info("recovery: %s %s (%s)", outcome.subject, outcome.action, outcome.note)
    return result


def _absorb_blob_poison(
    resources: RecoveryResources, now: dt.datetime, run_id: str, poisoned: set[str]
) -> list[Outcome]:
    """Blob-trigger poison messages of the CRM container become ops rows and one alert each; the
    sweep's scan of unprocessed blobs (next step) is what stages them. Other functions' poison
    messages (the queue is the host's, per account) are left alone."""
    queue = resources.queue(BLOB_POISON_QUEUE)
    outcomes = []
    for message in _receive_all(queue):
        item = describe(queue, message)
        if item.blob is None or item.blob[0] != resources.settings.crm_container:
            queue.update_visibility(message, 0)
            continue
        poisoned.add(item.blob[1])
        _record(resources, item, now, run_id, item.detail)
        send_safely(
            resources.alerts,
            new_alert(
                resources.settings.pipeline_name,
                crm_staging.STEP,
                "error",
                "CRM file gave up by the blob trigger (poison)",
                f"The {item.detail} failed {queue_config().max_dequeue_count} times and was moved to "
                f"{BLOB_POISON_QUEUE}. The timer's recovery sweep stages it once the cause is gone "
                "(see ops.pipeline_runs for the failures, ops.poison_events for this record).",
                run_id=run_id,
                dates=item.dates[:1],  # the first date of a build message names the incident
                subject=item.subject,
            ),
        )
        queue.delete(message)
        outcomes.append(Outcome(item.subject, "kept", "recorded in ops.poison_events; staged by the sweep"))
    return outcomes


def _stage_unprocessed_blobs(
    resources: RecoveryResources, now: dt.datetime, run_id: str, poisoned: set[str]
) -> list[Outcome]:
    settings = resources.settings
    warehouse = resources.warehouse
    versions = {(r["source_blob"], r["etag"]) for r in warehouse.run("ops/crm_blob_versions__processed")}
    # Records older than ops.crm_blob_versions: a snapshot staged (or a file quarantined) after
    # the blob was last written means that version was handled, or superseded by a later file.
    handled_after = _latest_handling(warehouse)
    still_open = {e["subject"] for e in recent_events(warehouse, 1000) if e["status"] == "poisoned"}
    outcomes = []
    for blob in resources.blobs.list(settings.crm_container):
        if (blob.name, blob.etag) in versions:
            continue
        if blob.name not in poisoned and now - _aware(blob.last_modified) < SWEEP_MIN_AGE:
            continue
        day = crm_staging.snapshot_date_from_name(blob.name, settings.crm_date_pattern)
        subject = blob_subject(settings.crm_container, blob.name, blob.etag)
        later = [handled_after.get(("blob", blob.name)), handled_after.get(("date", day))]
        if any(t is not None and t >= _aware(blob.last_modified) for t in later):
            if subject in still_open:  # poisoned, then overtaken by a later file of its date
                note = "a later file for its date was staged after it: superseded, not staged"
                _resolve(resources, subject, "recovered", now, run_id, note)
                outcomes.append(Outcome(subject, "recovered", note))
            continue
        outcome = _stage_blob(resources, blob.name, now, run_id)
        if outcome.action != "failed":
            _resolve(resources, subject, "recovered", now, run_id, outcome.note)
        outcomes.append(Outcome(subject, outcome.action, outcome.note))
    return outcomes


def _latest_handling(warehouse: Warehouse) -> dict[tuple[str, Any], dt.datetime]:
    latest: dict[tuple[str, Any], dt.datetime] = {}
    for row in warehouse.run("ops/crm_blob_versions__handled"):
        # A quarantined file (no snapshot_date here) handles its own blob, not its date.
        for key in (("blob", row["source_blob"]), ("date", row["snapshot_date"])):
            at = _aware(row["handled_at"])
            if key[1] is not None and (key not in latest or latest[key] < at):
                latest[key] = at
    return latest


def _stage_blob(resources: RecoveryResources, name: str, now: dt.datetime, run_id: str) -> Outcome:
    subject = f"blob {name}"
    try:
        result = resources.stage_crm_blob(name)
    except Exception as exc:
        log.warning("recovery could not stage %s yet (%s)", name, type(exc).__name__)
        return Outcome(subject, "failed", f"{type(exc).__name__}: {redact(str(exc))[:200]}")
    log.info("recovered: CRM blob %s %s by the sweep (run %s)", name, result.status, run_id)
    return Outcome(subject, "staged", f"{result.status}, {result.rows_staged} rows staged")


def _recover_builds(resources: RecoveryResources, now: dt.datetime, run_id: str, poisoned: set[str]) -> list[Outcome]:
    queue = resources.queue(f"{resources.settings.build_queue}-poison")
    outcomes = []
    for message in _receive_all(queue):
        item = describe(queue, message)
        if item.kind != "build" or item.request is None:
            _record(resources, item, now, run_id, item.detail)
            queue.delete(message)
            _resolve(resources, item.subject, "dropped", now, run_id, f"unreadable: {item.detail}")
            outcomes.append(Outcome(item.subject, "dropped", item.detail))
            continue
        _record(resources, item, now, run_id, item.detail)
        stale = dates_needing_build(resources, item.request, now)
        if stale:
            resources.queue(resources.settings.build_queue).send_text(message.text)
            queue.delete(message)
            note = f"re-queued: {describe_dates(stale)} still unbuilt or stale"
            _resolve(resources, item.subject, "requeued", now, run_id, note)
            outcomes.append(Outcome(item.subject, "requeued", note))
        else:
            queue.delete(message)
            note = "its dates are built and up to date (or have no inputs yet): nothing to do"
            _resolve(resources, item.subject, "recovered", now, run_id, note)
            outcomes.append(Outcome(item.subject, "recovered", note))
    return outcomes


def dates_needing_build(resources: RecoveryResources, request: BuildRequest, now: dt.datetime) -> list[dt.date]:
    """The request's dates that are unbuilt or built from other input versions than now."""
    candidates = list(request.dates)
    if not request.force:
        lacking = set(resources.readiness.lacking_inputs(candidates, now))
        candidates = [d for d in candidates if d not in lacking]
    if not candidates:
        return []
    current = dict(resources.readiness.input_versions(candidates))
    built = recorded_versions(resources.warehouse, candidates[0], candidates[-1])
    return list(plan_build(candidates, current, built).changed)


# ---- ops records ------------------------------------------------------------------------------
def recent_events(warehouse: Warehouse, limit: int = 100) -> list[dict[str, Any]]:
    return warehouse.run("ops/poison_events__recent", {"limit": int(limit)})


def _record(resources: RecoveryResources, item: PoisonItem, now: dt.datetime, run_id: str, note: str) -> None:
    resources.warehouse.run(
        "ops/poison_events__record",
        {
            "subject": item.subject,
            "kind": item.kind,
            "source_queue": item.queue,
            "dates": describe_dates(item.dates)[:400] if item.dates else None,
            "date_from": item.dates[0] if item.dates else None,
            "date_to": item.dates[-1] if item.dates else None,
            "detected_at": naive_utc(now),
            "run_id": run_id,
            "note": note[:2000],
        },
    )


def _resolve(resources: RecoveryResources, subject: str, status: str, now: dt.datetime, run_id: str, note: str) -> None:
    resources.warehouse.run(
        "ops/poison_events__resolve",
        {"subject": subject, "status": status, "resolved_at": naive_utc(now), "resolved_run_id": run_id, "note": note},
    )


# ---- small helpers ---------------------------------------------------------------------------
def _receive_all(queue: QueueStore) -> list[ReceivedMessage]:
    received: list[ReceivedMessage] = []
    for _ in range(_RECEIVE_BATCHES):
        try:
            batch = queue.receive(max_messages=32, visibility_timeout_s=_HIDE_S)
        except StorageNotFound:  # the host creates a poison queue with its first message
            break
        if not batch:
            break
        received += batch
    return received


def _aware(moment: Any) -> dt.datetime:
    if isinstance(moment, dt.datetime):
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)
    return dt.datetime.combine(moment, dt.time(), tzinfo=dt.UTC)
