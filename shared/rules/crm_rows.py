"""Validation of a CRM snapshot CSV, streamed: bytes in, validated rows and rejections out.

Pure logic (no I/O): the caller supplies an iterator of byte chunks and decides where rows
and rejections go. Memory is bounded by one chunk plus one batch of records, whatever the file
size. Records are validated a batch at a time, column by column (``validate_batch``); any row a
column check doubts goes to ``validate_record``, the row rules' one definition, so the batch path
accepts and rejects exactly what the rules do (tests/unit/rules/test_crm_batch_equivalence.py).

Conventions (SPEC section 2):
- UTF-8, with or without BOM. Invalid UTF-8 rejects the whole file (reason names the byte offset).
- RFC 4180 (quoted fields, embedded commas and newlines, ``""`` escapes); malformed quoting
  rejects the whole file, since the record boundaries after it cannot be trusted.
- Header required; names trimmed and case-insensitive; ``company_name`` is an alias of ``name``.
  Extra columns are ignored and reported; a missing required column rejects the file.
- Row numbers count records with the header as row 1 (so in a file without embedded newlines
  the row number is the line number an editor shows). Blank lines are skipped and counted.
- Values are trimmed; empty means NULL. A row is rejected for: a wrong number of fields, a
  control character other than tab/CR/LF, an empty ``company_id``, a value longer than its
  column (shared/rules/column_limits.py: the NVARCHAR sizes of the T-SQL schema, in UTF-16 code
  units), an unparsable ``last_contact_at`` (ISO-8601; offsets converted to UTC; naive values
  are UTC).
- Memory is bounded whatever the file holds: a record (its physical lines) longer than
  ``max_line_bytes`` or a header/record with more than ``max_fields`` fields rejects the file
  (CRM_MAX_LINE_BYTES, CRM_MAX_FIELDS), so a 50 MB line of commas never becomes 50 million fields.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from hashlib import sha256
from itertools import compress, islice
from typing import Any, NamedTuple

from shared.errors import CrmFileRejected
from shared.rules.column_limits import CRM_TEXT_LENGTHS, length_over

REQUIRED_COLUMNS: tuple[str, ...] = ("company_id", "name", "country", "industry_tag", "last_contact_at")
COLUMN_ALIASES: dict[str, str] = {"company_name": "name"}
# The NVARCHAR sizes of stg.crm_companies, by the file's column names.
MAX_LENGTHS: dict[str, int] = {COLUMN_ALIASES.get(c, c): n for c, n in CRM_TEXT_LENGTHS.items()}
# A report shows at most this much of an offending value.
REPORT_VALUE_CHARS = 200
# Defaults of CRM_MAX_LINE_BYTES / CRM_MAX_FIELDS (shared/settings.py), for callers without settings.
DEFAULT_MAX_LINE_BYTES = 1024 * 1024
DEFAULT_MAX_FIELDS = 1000

_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_BOM = "\ufeff"
# Separator and NULL marker of the canonical attribute encoding: both are control characters,
# which the row rules reject, so no value can contain them and the encoding is unambiguous.
_SEP = "\x1f"
_NULL = "\x00"


class CrmFileRejection(CrmFileRejected):
    """The whole file is rejected; ``reason`` is a short code, the message says why (no values)."""

    def __init__(self, reason: str, message: str, row: int | None = None, byte_offset: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.row = row
        self.byte_offset = byte_offset


class CrmRow(NamedTuple):
    """One validated data row, values trimmed, empty values None, timestamp naive UTC."""

    company_id: str
    company_name: str | None
    country: str | None
    industry_tag: str | None
    last_contact_at: dt.datetime | None
    attributes_hash: str
    source_row: int


@dataclass(frozen=True)
class Problem:
    column: str | None
    value: str | None  # truncated to REPORT_VALUE_CHARS
    reason: str


@dataclass(frozen=True)
class RowRejection:
    """A rejected data row with every problem found in it."""

    row: int
    problems: tuple[Problem, ...]


@dataclass
class ParseStats:
    """Counts kept while streaming (no per-row state)."""

    data_rows: int = 0
    valid_rows: int = 0
    rejected_rows: int = 0
    blank_lines: int = 0
    bytes_read: int = 0
    header: tuple[str, ...] = ()
    extra_columns: tuple[str, ...] = ()


def attributes_hash(
    company_name: str | None, country: str | None, industry_tag: str | None, last_contact_at: dt.datetime | None
) -> str:
    """sha256 of the attributes that make a dim.companies version; NULL differs from any value."""
    return sha256(attributes_text(company_name, country, industry_tag, last_contact_at).encode("utf-8")).hexdigest()


def attributes_text(
    company_name: str | None, country: str | None, industry_tag: str | None, last_contact_at: dt.datetime | None
) -> str:
    """What attributes_hash hashes: the four attributes joined, NULL as a character no value holds."""
    stamp = last_contact_at.isoformat() if last_contact_at is not None else _NULL
    parts = [_NULL if v is None else v for v in (company_name, country, industry_tag)]
    return _SEP.join((*parts, stamp))


def parse_timestamp(text: str) -> dt.datetime:
    """ISO-8601 to naive UTC; ``ValueError`` when unparsable."""
    value = dt.datetime.fromisoformat(text)
    if value.tzinfo is not None:
        try:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        except OverflowError as exc:  # e.g. 0001-01-01T00:00:00+01:00
            raise ValueError("out of range once converted to UTC") from exc
    return value


def truncate(value: str) -> str:
    return value if len(value) <= REPORT_VALUE_CHARS else value[:REPORT_VALUE_CHARS] + "…"


# ---- bytes → text → lines ------------------------------------------------------------------
def decode_utf8(chunks: Iterable[bytes], stats: ParseStats | None = None) -> Iterator[str]:
    """Decode chunks incrementally as UTF-8, dropping a leading BOM; invalid bytes reject the file."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
    consumed = 0  # bytes fed to the decoder before the current chunk
    first = True
    for chunk in chunks:
        if not chunk:
            continue
        pending = len(decoder.getstate()[0])
        try:
            text = decoder.decode(chunk)
        except UnicodeDecodeError as exc:
            raise _invalid_utf8(consumed - pending + exc.start) from None
        consumed += len(chunk)
        if stats is not None:
            stats.bytes_read = consumed
        if first and text:
            first = False
            text = text.removeprefix(_BOM)
        if text:
            yield text
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        raise _invalid_utf8(consumed - len(decoder.getstate()[0]) + exc.start) from None


def _invalid_utf8(offset: int) -> CrmFileRejection:
    return CrmFileRejection(
        "invalid_utf8", f"file is not valid UTF-8: invalid byte sequence at byte offset {offset}", byte_offset=offset
    )


def split_lines(texts: Iterable[str], max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> Iterator[str]:
    """Physical lines with their endings (LF, CRLF or CR), as csv.reader wants them.

    Splitting happens only at the last LF of what has arrived, so a CRLF split across two chunks
    stays one ending; io.StringIO(newline="") splits on exactly CR, LF and CRLF (not on the other
    Unicode line breaks str.splitlines knows, which are data here). A line growing past
    ``max_line_bytes`` (a character is at least one byte) rejects the file before it is held whole.
    """
    carry = ""
    for text in texts:
        buffer = carry + text
        cut = buffer.rfind("\n") + 1
        if cut == 0:
            carry = buffer
            if len(carry) > max_line_bytes:
                raise _line_too_long(max_line_bytes)
            continue
        carry = buffer[cut:]
        if len(carry) > max_line_bytes:
            raise _line_too_long(max_line_bytes)
        yield from io.StringIO(buffer[:cut], newline="")
    if carry:
        yield from io.StringIO(carry, newline="")


def _line_too_long(max_line_bytes: int) -> CrmFileRejection:
    return CrmFileRejection("line_too_long", f"a record is longer than {max_line_bytes} bytes (CRM_MAX_LINE_BYTES)")


class RecordBound:
    """Counts the bytes of the physical lines csv.reader pulls for one record; ``reset()`` after
    each record. A record spread over many lines (quoted newlines) is bounded like one line."""

    def __init__(self, lines: Iterable[str], max_bytes: int) -> None:
        self._lines = lines
        self._max = max_bytes
        self.bytes = 0

    def __iter__(self) -> Iterator[str]:
        for line in self._lines:
            # Characters are a lower bound of bytes; encode only when it could matter.
            self.bytes += len(line) if len(line) * 4 + self.bytes <= self._max else len(line.encode("utf-8"))
            if self.bytes > self._max:
                raise _line_too_long(self._max)
            yield line

    def reset(self) -> None:
        self.bytes = 0


# ---- header ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class HeaderMap:
    """Where each required column sits in a record, and what else the header had."""

    positions: tuple[int, ...]  # index of each REQUIRED_COLUMNS entry
    width: int
    extra_columns: tuple[str, ...]

    def record(self, values: Iterable[str]) -> list[str]:
        """A record of the header's width holding the REQUIRED_COLUMNS ``values`` at their
        positions (extra columns empty): what validate_record reads."""
        record = [""] * self.width
        for position, value in zip(self.positions, values, strict=True):
            record[position] = value
        return record


def map_header(header: list[str], max_fields: int = DEFAULT_MAX_FIELDS) -> HeaderMap:
    if len(header) > max_fields:
        raise CrmFileRejection(
            "too_many_fields", f"header has {len(header)} fields, more than {max_fields} (CRM_MAX_FIELDS)", row=1
        )
    names = [COLUMN_ALIASES.get(n, n) for n in (h.strip().lower() for h in header)]
    seen: dict[str, int] = {}
    for index, name in enumerate(names):
        if name in REQUIRED_COLUMNS and name in seen:
            raise CrmFileRejection(
                "duplicate_column", f"header names column {name!r} twice (company_name is an alias of name)", row=1
            )
        seen.setdefault(name, index)
    missing = [c for c in REQUIRED_COLUMNS if c not in seen]
    if missing:
        raise CrmFileRejection("missing_columns", f"header lacks required column(s): {', '.join(missing)}", row=1)
    extra = tuple(truncate(header[i].strip()) for i, n in enumerate(names) if n not in REQUIRED_COLUMNS)
    return HeaderMap(tuple(seen[c] for c in REQUIRED_COLUMNS), len(header), extra)


# ---- rows -----------------------------------------------------------------------------------
def validate_record(record: list[str], header: HeaderMap, row: int) -> CrmRow | RowRejection:
    """Apply the row rules to one CSV record (row = record number, header = 1)."""
    if len(record) != header.width:
        return RowRejection(row, (Problem(None, None, f"expected {header.width} fields, found {len(record)}"),))
    raw = [record[i] for i in header.positions]
    problems: list[Problem] = []
    if _CONTROL_CHARS.search("\t".join(raw)) is not None:  # tab is allowed: a cheap one-search fast path
        problems.extend(
            Problem(column, truncate(value), "contains a control character")
            for column, value in zip(REQUIRED_COLUMNS, raw, strict=True)
            if _CONTROL_CHARS.search(value)
        )
        return RowRejection(row, tuple(problems))
    company_id, name, country, industry, contact = (v.strip() or None for v in raw)
    if company_id is None:
        problems.append(Problem("company_id", raw[0], "empty company_id"))
    for column, value in zip(REQUIRED_COLUMNS[:4], (company_id, name, country, industry), strict=True):
        length = None if value is None else length_over(value, MAX_LENGTHS[column])
        if length is not None:
            problems.append(
                Problem(column, truncate(value or ""), f"too long: {length} > {MAX_LENGTHS[column]} characters")
            )
    last_contact_at = None
    if contact is not None:
        try:
            last_contact_at = parse_timestamp(contact)
        except ValueError:
            problems.append(Problem("last_contact_at", truncate(contact), "not an ISO-8601 timestamp"))
    if problems or company_id is None:
        return RowRejection(row, tuple(problems))
    return CrmRow(
        company_id,
        name,
        country,
        industry,
        last_contact_at,
        attributes_hash(name, country, industry, last_contact_at),
        row,
    )


@dataclass(frozen=True)
class DeferredHashes:
    """A batch's attributes hashes not taken yet: each row's attributes_text and the function
    that hashes them all. The fast path (crm_fast.py) leaves them so, and ``RowBatch.columns()``
    takes them in the thread that loads the batch, beside the next batch's read."""

    texts: Any
    hash_texts: Callable[[Any], Any]


@dataclass
class RowBatch:
    """The validated rows of one batch of records, by column (what the landing table takes), and
    the batch's rejected rows; both in row order. The fast path (crm_fast.py) gives the columns
    as Arrow arrays of the same values, its hashes deferred until ``columns()``."""

    company_id: list[str]
    company_name: list[str | None]
    country: list[str | None]
    industry_tag: list[str | None]
    last_contact_at: list[dt.datetime | None]
    attributes_hash: list[str] | DeferredHashes
    source_row: list[int]
    rejections: list[RowRejection]

    @classmethod
    def from_columns(cls, columns: Sequence[Any], rejections: list[RowRejection]) -> RowBatch:
        """A batch from its columns in CrmRow's field order (lists, or Arrow arrays)."""
        company_id, company_name, country, industry_tag, last_contact_at, attributes_hash, source_row = columns
        return cls(
            company_id, company_name, country, industry_tag, last_contact_at, attributes_hash, source_row, rejections
        )

    def __len__(self) -> int:
        return len(self.source_row)

    def columns(self) -> tuple[list[Any], ...]:
        """The valid rows' values in CrmRow's field order, one list per field."""
        hashes = self.attributes_hash
        if isinstance(hashes, DeferredHashes):
            self.attributes_hash = hashes = hashes.hash_texts(hashes.texts)
        return (
            self.company_id,
            self.company_name,
            self.country,
            self.industry_tag,
            self.last_contact_at,
            hashes,
            self.source_row,
        )

    def items(self) -> Iterator[CrmRow | RowRejection]:
        """Valid rows and rejections merged back into row order, one object each."""
        rejections = iter(self.rejections)
        pending = next(rejections, None)
        # The fast path's columns are Arrow arrays (shared/rules/crm_fast.py).
        columns = [values.to_pylist() if hasattr(values, "to_pylist") else values for values in self.columns()]
        for row in map(CrmRow._make, zip(*columns, strict=True)):
            while pending is not None and pending.row < row.source_row:
                yield pending
                pending = next(rejections, None)
            yield row
        if pending is not None:
            yield pending
            yield from rejections


def validate_batch(raw: list[list[str]], rows: list[int], header: HeaderMap, may_have_control: bool) -> RowBatch:
    """Apply the row rules to records that have the header's width, column by column.

    ``raw`` holds one list per REQUIRED_COLUMNS entry (untrimmed values), ``rows`` the record
    numbers. The rules are validate_record's, applied a column at a time: a row any check doubts
    (a control character, an empty id, a value that may be too long, an unparsable timestamp) is
    handed to validate_record itself, so a rejection is always the reference's own, and only rows
    every check passes take the column path. ``may_have_control`` is False when the text these
    records came from has no control character at all (one search per chunk instead of per row).
    """
    doubtful: set[int] = set()
    if may_have_control:
        doubtful.update(
            i for i, values in enumerate(zip(*raw, strict=True)) if _CONTROL_CHARS.search("\t".join(values))
        )
    ids, names, countries, industries = ([v.strip() for v in column] for column in raw[:4])
    if "" in ids:
        doubtful.update(i for i, v in enumerate(ids) if not v)
    for column, values in zip(REQUIRED_COLUMNS[:4], (ids, names, countries, industries), strict=True):
        half = MAX_LENGTHS[column] // 2  # NVARCHAR counts an astral character twice: longer may not fit
        if max(map(len, values), default=0) > half:
            doubtful.update(i for i, v in enumerate(values) if len(v) > half)
    stamps, stamp_texts = _timestamps(raw[4], doubtful)
    hashes = [
        sha256(f"{n or _NULL}{_SEP}{c or _NULL}{_SEP}{t or _NULL}{_SEP}{s}".encode()).hexdigest()
        for n, c, t, s in zip(names, countries, industries, stamp_texts, strict=True)
    ]
    batch = RowBatch(ids, _nulls(names), _nulls(countries), _nulls(industries), stamps, hashes, rows, [])
    return _settle_doubtful(batch, raw, header, doubtful) if doubtful else batch


def _nulls(values: list[str]) -> list[str | None]:
    return [v or None for v in values]


def _timestamps(texts: list[str], doubtful: set[int]) -> tuple[list[dt.datetime | None], list[str]]:
    """parse_timestamp over a column, and each value's text in the attributes hash; a value that
    does not parse marks its row doubtful."""
    stamps: list[dt.datetime | None] = []
    hashed: list[str] = []
    add_stamp, add_text = stamps.append, hashed.append
    for index, text in enumerate(texts):
        text = text.strip()
        value = None
        if text:
            try:
                value = parse_timestamp(text)
            except ValueError:
                doubtful.add(index)
        add_stamp(value)
        add_text(_NULL if value is None else value.isoformat())
    return stamps, hashed


def _settle_doubtful(batch: RowBatch, raw: list[list[str]], header: HeaderMap, doubtful: set[int]) -> RowBatch:
    """Run validate_record on the doubtful rows: its rejections replace them, its valid rows stay."""
    keep = [True] * len(batch)
    values: list[list[Any]] = list(batch.columns())
    for index in sorted(doubtful):
        record = header.record(column[index] for column in raw)
        result = validate_record(record, header, batch.source_row[index])
        if isinstance(result, RowRejection):
            keep[index] = False
            batch.rejections.append(result)
        else:
            for field_values, value in zip(values, result, strict=True):
                field_values[index] = value
    return RowBatch.from_columns([list(compress(field_values, keep)) for field_values in values], batch.rejections)


class CrmCsvParser:
    """Read a CRM CSV: ``batches()`` yields a ``RowBatch`` per ``BATCH_RECORDS`` records and
    iterating yields ``CrmRow`` and ``RowRejection`` one by one; both raise ``CrmFileRejection``.

    ``stats`` is filled while reading (the header information once the header is read). Rows
    before a file-level problem are delivered (and counted) before it is raised.
    """

    BATCH_RECORDS = 50000

    def __init__(
        self,
        chunks: Iterable[bytes],
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        max_fields: int = DEFAULT_MAX_FIELDS,
    ) -> None:
        self._chunks = chunks
        self.max_line_bytes = max_line_bytes
        self.max_fields = max_fields
        self.stats = ParseStats()
        self._control_seen = False

    def __iter__(self) -> Iterator[CrmRow | RowRejection]:
        for batch in self.batches():
            yield from batch.items()

    def _texts(self) -> Iterator[str]:
        """The decoded text, noting whether any control character has gone by: until one has,
        no record can hold one and the per-row search is skipped."""
        for text in decode_utf8(self._chunks, self.stats):
            if not self._control_seen and _CONTROL_CHARS.search(text):
                self._control_seen = True
            yield text

    def batches(self) -> Iterator[RowBatch]:
        # csv's own field limit (default 128 KiB) is process-wide; a record is bounded by
        # RecordBound below, so no single field can be larger than the record limit anyway.
        if csv.field_size_limit() < self.max_line_bytes:
            csv.field_size_limit(self.max_line_bytes)
        bound = RecordBound(split_lines(self._texts(), self.max_line_bytes), self.max_line_bytes)
        reader = csv.reader(bound, strict=True)
        row = 0
        try:
            header_record = next(reader, None)
            bound.reset()
            row = 1
            while header_record is not None and not header_record:  # blank lines before the header
                self.stats.blank_lines += 1
                header_record = next(reader, None)
                bound.reset()
        except csv.Error as exc:
            raise CrmFileRejection("malformed_csv", f"malformed CSV at row {row + 1}: {exc}", row=row + 1) from None
        if header_record is None:
            raise CrmFileRejection("empty_file", "file is empty: no header")
        header = map_header(header_record, self.max_fields)
        self.stats.header = tuple(truncate(h.strip()) for h in header_record)
        self.stats.extra_columns = header.extra_columns
        while True:
            read = _read_records(reader, bound, header, row + 1, self.BATCH_RECORDS, self.max_fields)
            row = read.last_row
            if read.rows or read.others:
                yield self._validate(read, header)
            if read.error is not None:
                raise read.error
            if read.exhausted:
                break
        if self.stats.data_rows == 0:
            raise CrmFileRejection("no_data_rows", "file has a header but no data rows")

    def _validate(self, read: _Records, header: HeaderMap) -> RowBatch:
        batch = validate_batch(read.columns, read.rows, header, self._control_seen)
        for row, record in read.others:
            if not record:
                self.stats.blank_lines += 1
            else:
                rejection = validate_record(record, header, row)
                # Kept aside for their width, which validate_record always rejects.
                assert isinstance(rejection, RowRejection)
                batch.rejections.append(rejection)
        if read.others:
            batch.rejections.sort(key=lambda rejection: rejection.row)
        self.stats.data_rows += len(read.rows) + sum(1 for _, record in read.others if record)
        self.stats.rejected_rows += len(batch.rejections)
        self.stats.valid_rows += len(batch)
        return batch


@dataclass
class _Records:
    """Up to one batch of records as read: those of the header's width by column, the others
    (blank lines, wrong widths) whole, and the file-level error that ended the reading, if any."""

    columns: list[list[str]]
    rows: list[int]
    others: list[tuple[int, list[str]]]
    last_row: int
    exhausted: bool = False
    error: CrmFileRejection | None = None


def _read_records(
    reader: Iterator[list[str]], bound: RecordBound, header: HeaderMap, first_row: int, limit: int, max_fields: int
) -> _Records:
    """Read up to ``limit`` records (record numbers from ``first_row``). The loop only sorts
    values into columns: it is the one per-record Python step of the parser."""
    columns: list[list[str]] = [[] for _ in REQUIRED_COLUMNS]
    rows: list[int] = []
    others: list[tuple[int, list[str]]] = []
    add_row, add_other = rows.append, others.append
    adds = [column.append for column in columns]
    (p0, a0), (p1, a1), (p2, a2), (p3, a3), (p4, a4) = zip(header.positions, adds, strict=True)
    width = header.width
    row = first_row - 1
    read = _Records(columns, rows, others, row)
    try:
        for row, record in enumerate(islice(reader, limit), first_row):
            bound.bytes = 0  # RecordBound.reset(), inlined: this loop is the hot path
            if len(record) == width:
                add_row(row)
                a0(record[p0])
                a1(record[p1])
                a2(record[p2])
                a3(record[p3])
                a4(record[p4])
            elif len(record) > max_fields:
                read.error = CrmFileRejection(
                    "too_many_fields",
                    f"row {row} has {len(record)} fields, more than {max_fields} (CRM_MAX_FIELDS)",
                    row=row,
                )
                read.last_row = row
                return read
            else:
                add_other((row, record))
        else:
            read.exhausted = row < first_row + limit - 1
    except csv.Error as exc:
        read.error = CrmFileRejection("malformed_csv", f"malformed CSV at row {row + 1}: {exc}", row=row + 1)
    except CrmFileRejection as exc:
        read.error = exc
    read.last_row = row
    return read


def exceeds_threshold(rejected_rows: int, data_rows: int, threshold: float) -> bool:
    """True when the share of rejected rows is above the threshold (0..1)."""
    return data_rows > 0 and rejected_rows > threshold * data_rows
