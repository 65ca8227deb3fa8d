"""Replay (operator): restore the staging of dates from what already landed, by content.

For each date, the staged rows are compared with their source: usage with the accepted records
of the raw NDJSON landing (read back, no API call), CRM with the rows of the date's CRM file.
The recorded version (stg.usage_pulls, stg.crm_snapshots) is not trusted alone: rows lost or
altered under an unchanged version are found too. Whatever differs is re-staged through the
same staging code the triggers run (forced past the "unchanged" short cut); what matches is left
untouched. A dry run compares and reports, and writes nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from shared.clock import Clock, utc_now
from shared.errors import CrmFileRejected
from shared.logs import log_context, new_run_id
from shared.rules.crm_rows import CrmCsvParser, CrmRow
from shared.rules.date_ranges import DateRange
from shared.rules.dates import refuse_future_dates
from shared.rules.readiness import InputName
from shared.services import crm_staging, usage_ingest
from shared.services.crm_staging import StagingResources
from shared.services.progress import OperationStopped
from shared.services.resources import HasBlobs, HasSettings, HasWarehouse
from shared.services.usage_ingest import UsageResources
from shared.settings import Settings

if TYPE_CHECKING:
    from shared.adapters.blob_store import BlobStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Comparison:
    """Staged rows of one input of one date against their source."""

    source: str  # the raw NDJSON or the CRM blob compared with
    source_rows: int
    staged_rows: int
    missing: int  # in the source, not staged
    extra: int  # staged, not in the source
    changed: int  # staged with other values
    version_recorded: bool  # the recorded version is the source's

    @property
    def differs(self) -> bool:
        return bool(self.missing or self.extra or self.changed or not self.version_recorded)

    def describe(self) -> str:
        if not self.differs:
            return f"{self.staged_rows} staged rows match {self.source}"
        counts = ((self.missing, "missing"), (self.extra, "extra"), (self.changed, "changed"))
        parts = [f"{n} {what}" for n, what in counts if n]
        if not self.version_recorded:
            parts.append("version not recorded")
        return f"{self.staged_rows} staged rows vs {self.source_rows} in {self.source}: {', '.join(parts)}"


@dataclass(frozen=True)
class InputReplay:
    """What replay found and did for one input of one date."""

    input: InputName
    comparison: Comparison | None  # None: nothing landed to compare with (see note)
    restored: bool = False  # re-staged from the source
    would_restore: bool = False  # dry run: would re-stage
    status: str | None = None  # the staging outcome when restored (staged, rejected, ...)
    rows_staged: int | None = None
    note: str | None = None

    def describe(self) -> str:
        if self.comparison is None:
            return self.note or "nothing to compare"
        found = self.comparison.describe()
        if self.restored:
            return f"restored: {found} -> {self.status}, {self.rows_staged} rows staged"
        if self.would_restore:
            return f"would restore: {found}"
        return f"unchanged: {found}"


@dataclass(frozen=True)
class DateReplay:
    date: dt.date
    inputs: list[InputReplay]

    @property
    def restored(self) -> list[str]:
        return [item.input for item in self.inputs if item.restored]


@dataclass(frozen=True)
class ReplayResult:
    run_id: str | None
    dry_run: bool
    dates: list[DateReplay] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        def entry(item: InputReplay) -> dict[str, Any]:
            return {**asdict(item), "differs": bool(item.comparison and item.comparison.differs)}

        return json.loads(
            json.dumps(
                {
                    "run_id": self.run_id,
                    "dry_run": self.dry_run,
                    "dates": [
                        {"date": d.date, "restored": d.restored, "inputs": [entry(i) for i in d.inputs]}
                        for d in self.dates
                    ],
                    "restored": sum(len(d.restored) for d in self.dates),
                },
                default=str,
            )
        )


class ReplayResources(UsageResources, StagingResources, Protocol):
    """What replay needs: the usage staging's and the CRM staging's resources."""


class ComparisonResources(HasSettings, HasBlobs, HasWarehouse, Protocol):
    """What comparing staged rows with their source reads."""


def replay_dates(
    resources: ReplayResources,
    dates: DateRange,
    *,
    usage: bool = True,
    crm: bool = True,
    dry_run: bool = False,
    clock: Clock = utc_now,
) -> ReplayResult:
    """Compare and restore each date in turn (oldest first: CRM snapshots feed later dates)."""
    refuse_future_dates(dates.days(), clock())
    run_id = None if dry_run else new_run_id()
    done: list[DateReplay] = []
    for day in dates.days():
        with log_context(run_id=run_id, step="replay", date=day.isoformat()):
            try:
                items = []
                if usage:
                    items.append(_replay_usage(resources, day, run_id, dry_run, clock))
                if crm:
                    items.append(_replay_crm(resources, day, dry_run))
            except Exception as exc:
                before = f"; {done[0].date}..{done[-1].date} were done" if done else ""
                raise OperationStopped(f"replay stopped at {day}: {type(exc).__name__}: {exc}{before}") from exc
        done.append(DateReplay(day, items))
    return ReplayResult(run_id, dry_run, done)


# ---- usage -------------------------------------------------------------------------------------
def _replay_usage(
    resources: UsageResources, day: dt.date, run_id: str | None, dry_run: bool, clock: Clock
) -> InputReplay:
    comparison = compare_usage(resources, day)
    if comparison is None:
        return InputReplay("usage", None, note="no raw landing (no manifest): pull it with backfill")
    if not comparison.differs:
        return InputReplay("usage", comparison)
    if dry_run:
        return InputReplay("usage", comparison, would_restore=True)
    assert run_id is not None
    staged = usage_ingest.replay_from_raw(day, resources, run_id, clock(), force=True)
    log.info("usage of %s restored from raw: %s", day, comparison.describe())
    return InputReplay("usage", comparison, restored=True, status="staged", rows_staged=staged.rows)


def compare_usage(resources: ComparisonResources, day: dt.date) -> Comparison | None:
    """The accepted records of the raw landing against stg.product_usage; None without a landing."""
    container = resources.settings.raw_container
    manifest = usage_ingest.read_manifest(resources.blobs, container, day)
    if manifest is None:
        return None
    screen = usage_ingest.screen_raw(resources.blobs, container, day, manifest)
    expected = {r.company_id: (r.active_users, r.events) for r in screen.accepted}
    staged = {
        row["company_id"]: (int(row["active_users"]), int(row["events"]))
        for row in resources.warehouse.run("stg/product_usage__rows_of_date", {"activity_date": day})
    }
    recorded = resources.warehouse.run("stg/product_usage__current_version", {"activity_date": day})
    return _compare(
        f"{container}/{usage_ingest.raw_ndjson_path(day)}",
        expected,
        staged,
        bool(recorded) and recorded[0]["content_hash"] == screen.version(),
    )


# ---- CRM ---------------------------------------------------------------------------------------
def _replay_crm(resources: ReplayResources, day: dt.date, dry_run: bool) -> InputReplay:
    settings = resources.settings
    names = crm_blobs_of(resources.blobs, settings, day)
    if not names:
        return InputReplay("crm", None, note=f"no CRM file for the date in {settings.crm_container}")
    recorded = resources.warehouse.run("stg/crm_companies__snapshot", {"snapshot_date": day})
    # The file in force is the one staging recorded; else the latest that arrived.
    recorded_blob = recorded[0]["source_blob"] if recorded else None
    blob = recorded_blob if recorded_blob in names else names[-1]
    try:
        comparison = compare_crm(resources, day, blob, recorded[0]["content_hash"] if recorded else None)
    except CrmFileRejected as exc:
        return InputReplay("crm", None, note=f"{blob} is rejected as a whole ({exc}); nothing to restore")
    if not comparison.differs:
        return InputReplay("crm", comparison)
    if dry_run:
        return InputReplay("crm", comparison, would_restore=True)
    result = crm_staging.stage_crm_blob(blob, resources, force=True)
    log.info("CRM snapshot of %s restored from %s: %s", day, blob, comparison.describe())
    return InputReplay("crm", comparison, restored=True, status=result.status, rows_staged=result.rows_staged)


def compare_crm(resources: ComparisonResources, day: dt.date, blob: str, recorded_version: str | None) -> Comparison:
    """The valid rows of the CRM file (a repeated company_id: its last row, as staging keeps)
    against stg.crm_companies of the date."""
    source = crm_staging.HashingChunks(resources.blobs.iter_chunks(resources.settings.crm_container, blob))
    expected: dict[str, str] = {}
    for item in CrmCsvParser(source):
        if isinstance(item, CrmRow):
            expected[item.company_id] = item.attributes_hash
    source.drain()
    staged = {
        row["company_id"]: row["attributes_hash"]
        for row in resources.warehouse.run("stg/crm_companies__rows_of_date", {"snapshot_date": day})
    }
    return _compare(blob, expected, staged, recorded_version == source.hexdigest())


def crm_blobs_of(blobs: BlobStore, settings: Settings, day: dt.date) -> list[str]:
    """The CRM blobs whose name carries ``day``, oldest first (the last one staged wins, as when
    the blob trigger saw them arrive in that order)."""
    found = [
        info
        for info in blobs.list(settings.crm_container)
        if crm_staging.snapshot_date_from_name(info.name, settings.crm_date_pattern) == day
    ]
    return [info.name for info in sorted(found, key=lambda i: (i.last_modified, i.name))]


def _compare(source: str, expected: Mapping[str, Any], staged: Mapping[str, Any], recorded: bool) -> Comparison:
    return Comparison(
        source=source,
        source_rows=len(expected),
        staged_rows=len(staged),
        missing=len(expected.keys() - staged.keys()),
        extra=len(staged.keys() - expected.keys()),
        changed=sum(1 for key in expected.keys() & staged.keys() if expected[key] != staged[key]),
        version_recorded=recorded,
    )
