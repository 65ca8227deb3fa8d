"""CRM snapshot staging (blob trigger): validate, stage, update dim.companies, mark the date present.

One pass over the blob's bytes validates the CSV, hashes the content (sha256: the snapshot's
version) and streams the valid rows into the landing table, a batch of columns at a time
(Warehouse.bulk_load_columns). The pass is the fast path (shared/rules/crm_fast.py: Arrow reads
and validates by column) unless the file has something only the exact path
(shared/rules/crm_rows.py) reads right: then the landed rows are discarded and a second pass
reads the blob again with the exact path. Either way the rows, rejections and counts are the
same. Then:
- a rejected file (no date in the name, bad encoding or header, too many bad rows, no rows) is
  quarantined with a JSON error report, alerted, and changes nothing else;
- content already staged for the date changes nothing (the readiness mark is repeated: a no-op);
- otherwise one transaction replaces the date in stg.crm_companies and stg.crm_snapshots and
  brings dim.companies up to date; a failure inside it leaves the previous snapshot intact.
Rejected rows of an accepted file are quarantined (copy + report) and alerted as a warning.
Rejections are handled here, not raised: the host retrying a bad file would only re-alert.
Infrastructure errors are raised, so the host's retry applies (the steps are idempotent).

The blob is read raw and pinned to one version: its ETag is read first and every range read is
conditional on it. A blob with a Content-Encoding (gzip, ...) is rejected into quarantine, never
unpacked in memory. A blob overwritten (or deleted) before or while it is read ends this run as
``superseded``: the newer version is its own trigger's run. Every processed version is recorded
in ops.crm_blob_versions, which is how the timer's recovery sweep finds versions no run finished.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import hashlib
import json
import logging
import re
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from queue import Full, Queue
from typing import IO, TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from shared import telemetry
from shared.adapters.storage_common import StorageNotFound
from shared.adapters.warehouse.base import Warehouse
from shared.clock import Clock, utc_now
from shared.errors import ConcurrencyConflict
from shared.logs import log_context, new_run_id
from shared.rules.crm_fast import ArrowCsvParser, FastPathRefused
from shared.rules.crm_rows import (
    REPORT_VALUE_CHARS,
    CrmCsvParser,
    CrmFileRejection,
    ParseStats,
    Problem,
    RowRejection,
    exceeds_threshold,
)
from shared.services.alerts import AlertSink, Severity, new_alert
from shared.services.run_history import record_run
from shared.settings import Settings

if TYPE_CHECKING:
    from shared.adapters.blob_store import BlobInfo
    from shared.services.readiness import MarkResult

log = logging.getLogger(__name__)

STEP = "crm_staging"
TRIGGER = "crm_snapshot_arrived"
LANDING_TABLE = "stg.crm_companies_landing"
LANDING_COLUMNS = (
    "load_id",
    "snapshot_date",
    "company_id",
    "company_name",
    "country",
    "industry_tag",
    "last_contact_at",
    "attributes_hash",
    "source_row",
)
# Row errors listed in one report; beyond this the report says how many were left out (counts
# stay exact). A wholly bad 1M-row file would otherwise make a report of hundreds of MB.
MAX_REPORTED_ROW_ERRORS = 100_000
_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
_DOT_RUNS = re.compile(r"\.{2,}")
_UNDERSCORE_RUNS = re.compile(r"_{2,}")
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
_OBSERVED_LENGTH = re.compile(r"^too long: \d+ > (\d+) characters$")
# Causes named in a file-level reason or an alert; the report lists every row.
CAUSES_NAMED = 3
# Validated batches the reading thread may be ahead of the load by: it goes on reading while the
# engine writes one INSERT (DuckDB gathers ~9 of the fast path's ~53,000-row batches into one and
# writes them in about a third of the time they take to read), each batch ~8 MB of Arrow columns.
READ_AHEAD_BATCHES = 4

_T = TypeVar("_T")
StagingOutcome = Literal["staged", "unchanged", "rejected", "superseded"]
# Content-Encoding values that mean "the bytes are the file".
_PLAIN_ENCODINGS = frozenset({"", "identity"})


class BlobSource(Protocol):
    """What staging needs of shared.adapters.blob_store.BlobStore."""

    def info(self, container: str, name: str) -> BlobInfo | None: ...

    def iter_chunks(
        self, container: str, name: str, chunk_size: int = ..., *, etag: str | None = ...
    ) -> Iterator[bytes]: ...

    def write(
        self,
        container: str,
        name: str,
        data: bytes | Iterable[bytes],
        *,
        content_type: str = ...,
        metadata: dict[str, str] | None = ...,
        overwrite: bool = ...,
    ) -> BlobInfo: ...

    def copy(self, src_container: str, src_name: str, dst_container: str, dst_name: str) -> BlobInfo: ...


class Readiness(Protocol):
    def mark_input_present(
        self,
        activity_date: dt.date,
        input_name: Literal["crm", "usage"],
        version: str,
        rows: int,
        now: dt.datetime,
        run_id: str,
    ) -> MarkResult: ...


class StagingResources(Protocol):
    """What staging takes from shared.wiring.Resources (services never import the wiring)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def blobs(self) -> BlobSource: ...

    @property
    def warehouse(self) -> Warehouse: ...

    @property
    def readiness(self) -> Readiness: ...

    @property
    def alerts(self) -> AlertSink: ...


@dataclass(frozen=True)
class StagingResult:
    """What one invocation did (also what the local runner and tests look at)."""

    blob_name: str
    status: StagingOutcome
    snapshot_date: dt.date | None
    version: str | None  # sha256 of the file's bytes
    data_rows: int = 0
    rows_staged: int = 0
    rejected_rows: int = 0
    duplicate_rows: int = 0
    quarantine_blob: str | None = None
    report_blob: str | None = None
    reason: str | None = None
    extra_columns: tuple[str, ...] = ()  # header columns ignored (also in the log and any report)
    etag: str | None = None  # the blob version this run read


# ---- entry point ----------------------------------------------------------------------------
def stage_crm_blob(blob_name: str, resources: StagingResources, *, force: bool = False) -> StagingResult:
    """The blob trigger's service: stage ``blob_name`` of the CRM container. ``force`` re-stages
    content already recorded as staged (an operator's replay after staged rows were lost)."""
    return stage_crm_snapshot(
        blob_name,
        settings=resources.settings,
        blobs=resources.blobs,
        warehouse=resources.warehouse,
        readiness=resources.readiness,
        alerts=resources.alerts,
        force=force,
    )


def stage_crm_snapshot(
    blob_name: str,
    *,
    settings: Settings,
    blobs: BlobSource,
    warehouse: Warehouse,
    readiness: Readiness,
    alerts: AlertSink,
    run_id: str | None = None,
    clock: Clock = utc_now,
    force: bool = False,
) -> StagingResult:
    run_id = run_id or new_run_id()
    snapshot_date = snapshot_date_from_name(blob_name, settings.crm_date_pattern)
    with (
        log_context(run_id=run_id, step=STEP, date=snapshot_date),
        record_run(
            warehouse, step=STEP, run_id=run_id, run_date=snapshot_date, trigger_name=TRIGGER, clock=clock
        ) as run,
    ):
        job = _Job(blob_name, snapshot_date, settings, blobs, warehouse, readiness, alerts, run_id, clock, force)
        job.beat = run.beat
        result = job.run()
        if result.extra_columns:
            log.warning("CRM file has extra columns, ignored: %s", ", ".join(result.extra_columns))
            record_ignored_columns(warehouse, result, run_id, clock())
        run.rows_in = result.data_rows
        run.rows_out = result.rows_staged
        telemetry.set_attributes(**{"crm.status": result.status, "crm.rows_staged": result.rows_staged})
        telemetry.CRM_ROWS_STAGED.add(result.rows_staged)
        telemetry.CRM_ROWS_REJECTED.add(result.rejected_rows)
        if result.status in ("rejected", "superseded"):
            run.status = result.status
            run.error_message = result.reason
        record_blob_version(warehouse, result, run_id, clock())
        log.info(
            "CRM file %s: %s (%d rows staged, %d rejected, %d duplicates)",
            result.status,
            safe_blob_name(blob_name),
            result.rows_staged,
            result.rejected_rows,
            result.duplicate_rows,
        )
        return result


def record_blob_version(warehouse: Warehouse, result: StagingResult, run_id: str, now: dt.datetime) -> None:
    """This version of the blob is done with (whatever the outcome): the sweep leaves it alone."""
    if result.etag is None:
        return
    warehouse.run(
        "ops/crm_blob_versions__record",
        {
            "source_blob": result.blob_name,
            "etag": result.etag,
            "status": result.status,
            "snapshot_date": result.snapshot_date,
            "content_hash": result.version,
            "processed_at": now,
            "run_id": run_id,
        },
    )


def record_ignored_columns(warehouse: Warehouse, result: StagingResult, run_id: str, now: dt.datetime) -> None:
    """Extra header columns are ignored and reported (SPEC 2): here, in ops."""
    warehouse.run(
        "ops/crm_ignored_columns__record",
        {
            "source_blob": result.blob_name,
            "content_hash": result.version,
            "snapshot_date": result.snapshot_date,
            "column_names": ", ".join(result.extra_columns)[:2000],
            "recorded_at": now,
            "run_id": run_id,
        },
    )


class _Superseded(Exception):
    """The version being read was overwritten or deleted: a newer version has its own run."""


def _pinned(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Reads conditional on one ETag: a precondition failure or a vanished blob means superseded."""
    try:
        yield from chunks
    except (ConcurrencyConflict, StorageNotFound) as exc:
        raise _Superseded(str(exc)) from exc


# ---- pure helpers ---------------------------------------------------------------------------
def problem_kind(problem: Problem) -> str:
    """What a row problem is, without what varies from row to row (the observed length), so
    rows can be counted by cause: "name longer than 400 characters"."""
    reason = _OBSERVED_LENGTH.sub(r"longer than \1 characters", problem.reason)
    if problem.column is None or problem.column in reason:
        return reason
    return f"{problem.column} {reason}"


def describe_rejections(rejected: int, data_rows: int, causes: Counter[str], named: int = CAUSES_NAMED) -> str:
    """ "1 of 1 rows rejected: name longer than 400 characters" (the commonest causes first)."""
    text = f"{rejected} of {data_rows} rows rejected"
    if not causes:
        return text
    common = causes.most_common(named)
    parts = [cause if len(causes) == 1 else f"{cause} ({rows} rows)" for cause, rows in common]
    more = len(causes) - len(common)
    return text + ": " + "; ".join(parts) + (f"; and {more} other cause(s)" if more > 0 else "")


def snapshot_date_from_name(blob_name: str, pattern: str) -> dt.date | None:
    """The snapshot date the blob name carries (first match of the pattern's group), if a real date."""
    match = re.search(pattern, blob_name)
    if match is None or match.group(1) is None:
        return None
    try:
        return dt.date.fromisoformat(match.group(1))
    except ValueError:
        return None


def safe_blob_name(blob_name: str, limit: int = 100) -> str:
    """A name that is safe as one path segment: ``[A-Za-z0-9._-]`` only, no ``..``, bounded.

    The blob name comes from whoever uploaded the file; it is never used raw as a path.
    """
    cleaned = _UNDERSCORE_RUNS.sub("_", _DOT_RUNS.sub("_", _UNSAFE_NAME_CHARS.sub("_", blob_name))).strip("._-")
    return cleaned[-limit:].lstrip("._-") or "unnamed"


def quarantine_names(blob_name: str, snapshot_date: dt.date | None, content_hash: str) -> tuple[str, str]:
    """Deterministic (copy, report) names: a re-delivered file lands on the same two blobs."""
    folder = snapshot_date.isoformat() if snapshot_date else "undated"
    base = f"{folder}/{content_hash[:16]}-{safe_blob_name(blob_name)}"
    return base, f"{base}.report.json"


class HashingChunks:
    """Passes chunks through while computing sha256 and the byte count."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._sha = hashlib.sha256()
        self.size = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            self._sha.update(chunk)
            self.size += len(chunk)
            yield chunk

    def drain(self) -> None:
        """Read the rest (after an early rejection) so the hash covers the whole file."""
        for _ in self:
            pass

    def hexdigest(self) -> str:
        return self._sha.hexdigest()


_DONE = object()


def read_ahead(items: Iterable[_T], depth: int = 1) -> Iterator[_T]:
    """``items`` produced in a thread, up to ``depth`` ahead of the consumer: the next batch is
    read and validated (Arrow, C) while the engine loads this one, on the other core. An
    exception of the producer is raised here, in order; a consumer that stops early stops it."""
    queue: Queue[tuple[Any, BaseException | None]] = Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: tuple[Any, BaseException | None]) -> bool:
        while not stop.is_set():
            try:
                queue.put(entry, timeout=0.1)
                return True
            except Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            put((_DONE, exc))
            return
        put((_DONE, None))

    # The producer runs in a copy of this context: its logs and trace spans stay this run's.
    context = contextvars.copy_context()
    producer = threading.Thread(target=context.run, args=(produce,), name="crm-read-ahead", daemon=True)
    producer.start()
    try:
        while True:
            item, error = queue.get()
            if error is not None:
                raise error
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        producer.join()


class RejectionLog:
    """Row errors spooled to a temporary file (JSON lines): memory stays flat however many."""

    def __init__(self) -> None:
        self._file: IO[str] = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self.entries = 0
        self.truncated = 0
        self.causes: Counter[str] = Counter()  # rows per cause (all rows, even past the report limit)

    def add(self, rejection: RowRejection) -> None:
        self.causes.update({problem_kind(problem) for problem in rejection.problems})
        for problem in rejection.problems:
            if self.entries >= MAX_REPORTED_ROW_ERRORS:
                self.truncated += 1
                continue
            entry = {"row": rejection.row, "column": problem.column, "value": problem.value, "reason": problem.reason}
            self._file.write(json.dumps(entry, ensure_ascii=False) + "\n")
            self.entries += 1

    def lines(self) -> Iterator[str]:
        self._file.flush()
        self._file.seek(0)
        for line in self._file:
            yield line.rstrip("\n")

    def close(self) -> None:
        self._file.close()


def report_chunks(head: dict[str, Any], rejections: RejectionLog) -> Iterator[bytes]:
    """The JSON error report, streamed: ``head`` fields, then ``row_errors`` from the spool."""
    head = {**head, "row_errors_omitted": rejections.truncated}
    opening = json.dumps(head, ensure_ascii=False, indent=1, default=str)
    yield (opening[:-2] + ',\n "row_errors": [').encode("utf-8")
    for index, line in enumerate(rejections.lines()):
        yield (("," if index else "") + "\n  " + line).encode("utf-8")
    yield b"\n ]\n}\n"


def _encoding_rejection(info: BlobInfo) -> _Rejection | None:
    """A compressed (or otherwise encoded) blob is refused, never unpacked: a 2 MB gzip can hold
    gigabytes. Upload the CSV itself."""
    encoding = (info.content_encoding or "").strip().lower()
    if encoding in _PLAIN_ENCODINGS:
        return None
    return _Rejection(
        "content_encoding",
        f"the blob has Content-Encoding {encoding[:40]!r}; only plain CSV is accepted (upload it uncompressed)",
    )


# ---- one invocation -------------------------------------------------------------------------
@dataclass(frozen=True)
class _Rejection:
    reason: str  # short code
    message: str  # what and why, no row values
    row: int | None = None
    byte_offset: int | None = None


class _Job:
    """The steps of staging one blob, sharing their inputs."""

    def __init__(
        self,
        blob_name: str,
        snapshot_date: dt.date | None,
        settings: Settings,
        blobs: BlobSource,
        warehouse: Warehouse,
        readiness: Readiness,
        alerts: AlertSink,
        run_id: str,
        clock: Callable[[], dt.datetime],
        force: bool = False,
    ) -> None:
        self.force = force
        self.blob_name = blob_name
        self.snapshot_date = snapshot_date
        self.settings = settings
        self.blobs = blobs
        self.warehouse = warehouse
        self.readiness = readiness
        self.alerts = alerts
        self.run_id = run_id
        self.clock = clock
        self.load_id = run_id
        self.etag: str | None = None
        self.beat: Callable[[], None] = lambda: None  # the run's heartbeat, while rows stream

    def run(self) -> StagingResult:
        info = self.blobs.info(self.settings.crm_container, self.blob_name)
        if info is None:
            return self._superseded(None, "the blob was deleted before it was read")
        self.etag = info.etag
        self.source = self._read(info)
        parser: ArrowCsvParser | CrmCsvParser = ArrowCsvParser(
            self.source, self.settings.crm_max_line_bytes, self.settings.crm_max_fields
        )
        rejections = RejectionLog()
        try:
            file_rejection = self._name_rejection() or _encoding_rejection(info)
            if file_rejection is None:
                try:
                    file_rejection = self._land(parser, rejections)
                except FastPathRefused as refused:
                    log.info("CRM file read by the exact path: the fast path refused it (%s)", refused)
                    self._discard_landing()
                    rejections.close()
                    rejections = RejectionLog()
                    self.source = self._read(info)
                    parser = CrmCsvParser(self.source, self.settings.crm_max_line_bytes, self.settings.crm_max_fields)
                    file_rejection = self._land(parser, rejections)
            source = self.source
            source.drain()
            version = source.hexdigest()
            stats = parser.stats
            if file_rejection is None and exceeds_threshold(
                stats.rejected_rows, stats.data_rows, self.settings.crm_reject_threshold
            ):
                file_rejection = _Rejection(
                    "too_many_rejected_rows",
                    f"{describe_rejections(stats.rejected_rows, stats.data_rows, rejections.causes)} "
                    f"(above the threshold of {self.settings.crm_reject_threshold:.1%})",
                )
            if file_rejection is not None:
                self._discard_landing()
                return self._reject_file(file_rejection, version, stats, rejections)
            assert self.snapshot_date is not None  # a file without a date was rejected above
            return self._stage(self.snapshot_date, version, stats, rejections)
        except _Superseded as exc:
            self._discard_landing()
            return self._superseded(info.etag, f"the blob changed while it was read ({exc})")
        except BaseException:
            self._discard_landing_after_failure()
            raise
        finally:
            rejections.close()

    def _superseded(self, etag: str | None, why: str) -> StagingResult:
        log.warning("CRM file %s superseded: %s; the newer version is its own run", safe_blob_name(self.blob_name), why)
        return StagingResult(self.blob_name, "superseded", self.snapshot_date, None, reason=why, etag=etag)

    # -- steps --------------------------------------------------------------------------------
    def _name_rejection(self) -> _Rejection | None:
        if _CONTROL_CHARS.search(self.blob_name):
            return _Rejection("unsafe_blob_name", "blob name contains control characters")
        if self.snapshot_date is None:
            return _Rejection(
                "no_date_in_name",
                f"blob name has no valid snapshot date (pattern {self.settings.crm_date_pattern!r})",
            )
        return None

    def _read(self, info: BlobInfo) -> HashingChunks:
        """The blob's bytes, pinned to the version ``info`` describes, hashed as they pass."""
        return HashingChunks(
            _pinned(self.blobs.iter_chunks(self.settings.crm_container, self.blob_name, etag=info.etag))
        )

    def _land(self, parser: ArrowCsvParser | CrmCsvParser, rejections: RejectionLog) -> _Rejection | None:
        """Validate while streaming valid rows into the landing table, a batch of columns at a
        time; a file-level problem is returned. The fast path (ArrowCsvParser) raises
        FastPathRefused for a file only the exact path reads right."""
        assert self.snapshot_date is not None
        snapshot_date, load_id = self.snapshot_date, self.load_id

        def landing_batches() -> Iterator[tuple[list[Any], ...]]:
            for batch in read_ahead(parser.batches(), READ_AHEAD_BATCHES):
                self.beat()
                for rejection in batch.rejections:
                    rejections.add(rejection)
                if len(batch):
                    yield ([load_id] * len(batch), [snapshot_date] * len(batch), *batch.columns())

        try:
            self.warehouse.bulk_load_columns(LANDING_TABLE, LANDING_COLUMNS, landing_batches())
        except CrmFileRejection as exc:
            return _Rejection(exc.reason, str(exc), exc.row, exc.byte_offset)
        return None

    def _stage(
        self, snapshot_date: dt.date, version: str, stats: ParseStats, rejections: RejectionLog
    ) -> StagingResult:
        staged = self.warehouse.run("stg/crm_companies__snapshot", {"snapshot_date": snapshot_date})
        if staged and staged[0]["content_hash"] == version and not self.force:
            self._discard_landing()
            self._mark_present(snapshot_date, version, int(staged[0]["row_count"]))
            return StagingResult(
                self.blob_name,
                "unchanged",
                snapshot_date,
                version,
                data_rows=stats.data_rows,
                rows_staged=0,
                rejected_rows=stats.rejected_rows,
                duplicate_rows=int(staged[0]["duplicate_row_count"]),
                reason="this content is already staged for the date",
                extra_columns=stats.extra_columns,
                etag=self.etag,
            )
        quarantine_blob = report_blob = None
        if stats.rejected_rows:
            # Before the swap: if anything after fails, the retry redoes both (names are deterministic).
            quarantine_blob, report_blob = self._quarantine("partial", None, version, stats, rejections)
        now = self.clock()
        with self.warehouse.transaction():
            summary = self.warehouse.run(
                "stg/crm_companies__load",
                {
                    "load_id": self.load_id,
                    "snapshot_date": snapshot_date,
                    "source_blob": self.blob_name,
                    "content_hash": version,
                    "rejected_row_count": stats.rejected_rows,
                    "ingested_at": now,
                    "run_id": self.run_id,
                },
            )[0]
            self.warehouse.run(
                "dim/companies__scd2",
                {"snapshot_date": snapshot_date, "load_id": self.load_id, "run_id": self.run_id},
            )
        rows = int(summary["row_count"])
        self._mark_present(snapshot_date, version, rows)
        if stats.rejected_rows:
            self._alert(
                "warning",
                "CRM rows rejected",
                f"{describe_rejections(stats.rejected_rows, stats.data_rows, rejections.causes)}; the CRM "
                f"snapshot was staged without them. Report: {self.settings.quarantine_container}/{report_blob}",
                stats,
            )
        return StagingResult(
            self.blob_name,
            "staged",
            snapshot_date,
            version,
            data_rows=stats.data_rows,
            rows_staged=rows,
            rejected_rows=stats.rejected_rows,
            duplicate_rows=int(summary["duplicate_row_count"]),
            quarantine_blob=quarantine_blob,
            report_blob=report_blob,
            extra_columns=stats.extra_columns,
            etag=self.etag,
        )

    def _reject_file(
        self, rejection: _Rejection, version: str, stats: ParseStats, rejections: RejectionLog
    ) -> StagingResult:
        quarantine_blob, report_blob = self._quarantine("rejected", rejection, version, stats, rejections)
        self._alert(
            "error",
            "CRM file rejected",
            f"The CRM file was rejected ({rejection.reason}): {rejection.message}. Nothing was staged; the "
            f"previous snapshot stays in force. Report: {self.settings.quarantine_container}/{report_blob}",
            stats,
        )
        return StagingResult(
            self.blob_name,
            "rejected",
            self.snapshot_date,
            version,
            data_rows=stats.data_rows,
            rejected_rows=stats.rejected_rows,
            quarantine_blob=quarantine_blob,
            report_blob=report_blob,
            reason=rejection.message,
            extra_columns=stats.extra_columns,
            etag=self.etag,
        )

    def _quarantine(
        self,
        status: Literal["rejected", "partial"],
        rejection: _Rejection | None,
        version: str,
        stats: ParseStats,
        rejections: RejectionLog,
    ) -> tuple[str, str]:
        """Copy the file and write its report to the quarantine container; record it in ops."""
        container = self.settings.quarantine_container
        copy_name, report_name = quarantine_names(self.blob_name, self.snapshot_date, version)
        now = self.clock()
        self.blobs.copy(self.settings.crm_container, self.blob_name, container, copy_name)
        head = {
            "source_container": self.settings.crm_container,
            "source_blob": self.blob_name,
            "snapshot_date": self.snapshot_date,
            "content_sha256": version,
            "size_bytes": self.source.size,
            "status": status,
            "file_error": None
            if rejection is None
            else {
                "reason": rejection.reason,
                "message": rejection.message,
                "row": rejection.row,
                "byte_offset": rejection.byte_offset,
            },
            "row_numbering": "record number in the file, the header being row 1",
            "counts": {
                "data_rows": stats.data_rows,
                "valid_rows": stats.valid_rows,
                "rejected_rows": stats.rejected_rows,
                "blank_lines": stats.blank_lines,
            },
            "reject_threshold": self.settings.crm_reject_threshold,
            "header": list(stats.header),
            "extra_columns_ignored": list(stats.extra_columns),
            "value_max_chars": REPORT_VALUE_CHARS,
            "run_id": self.run_id,
            "generated_at": now,
        }
        self.blobs.write(
            container,
            report_name,
            report_chunks(head, rejections),
            content_type="application/json",
            metadata={"run_id": self.run_id, "status": status},
        )
        reason = (
            rejection.message
            if rejection
            else describe_rejections(stats.rejected_rows, stats.data_rows, rejections.causes)
        )
        self.warehouse.run(
            "ops/quarantined_files__record",
            {
                "source_blob": self.blob_name,
                "content_hash": version,
                "status": status,
                "snapshot_date": self.snapshot_date,
                "quarantine_blob": copy_name,
                "report_blob": report_name,
                "reason": reason[:2000],
                "rejected_row_count": stats.rejected_rows,
                "quarantined_at": now,
                "run_id": self.run_id,
            },
        )
        log.warning("CRM file quarantined (%s) as %s/%s", status, container, copy_name)
        return copy_name, report_name

    def _mark_present(self, snapshot_date: dt.date, version: str, rows: int) -> None:
        self.readiness.mark_input_present(snapshot_date, "crm", version, rows, self.clock(), self.run_id)

    def _alert(self, severity: Severity, title: str, message: str, stats: ParseStats) -> None:
        self.alerts.send(
            new_alert(
                self.settings.pipeline_name,
                STEP,
                severity,
                title,
                message,
                run_id=self.run_id,
                dates=[self.snapshot_date] if self.snapshot_date is not None else [],
                subject=f"{safe_blob_name(self.blob_name, limit=200)}@{(self.etag or '').strip(chr(34))}",
                facts={
                    "blob": safe_blob_name(self.blob_name, limit=200),
                    "data_rows": str(stats.data_rows),
                    "rejected_rows": str(stats.rejected_rows),
                },
            )
        )

    def _discard_landing(self) -> None:
        self.warehouse.run("stg/crm_companies__discard_landing", {"load_id": self.load_id})

    def _discard_landing_after_failure(self) -> None:
        """Best effort: the original error is what matters; leftovers are keyed by load_id."""
        try:
            self._discard_landing()
        except Exception:
            log.exception("could not discard the landing rows of load %s", self.load_id)
