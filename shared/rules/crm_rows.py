"""Validation of a CRM snapshot CSV, streamed: bytes in, validated rows and rejections out.

Pure logic (no I/O): the caller supplies an iterator of byte chunks and decides where rows
and rejections go. Memory is bounded by one chunk plus one record, whatever the file size.

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
import hashlib
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

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
    stamp = last_contact_at.isoformat() if last_contact_at is not None else _NULL
    parts = [_NULL if v is None else v for v in (company_name, country, industry_tag)]
    return hashlib.sha256(_SEP.join((*parts, stamp)).encode("utf-8")).hexdigest()


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


class CrmCsvParser:
    """Iterate a CRM CSV: yields ``CrmRow`` and ``RowRejection``; raises ``CrmFileRejection``.

    ``stats`` is filled while iterating (the header information once the header is read).
    """

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

    def __iter__(self) -> Iterator[CrmRow | RowRejection]:
        # csv's own field limit (default 128 KiB) is process-wide; a record is bounded by
        # RecordBound below, so no single field can be larger than the record limit anyway.
        if csv.field_size_limit() < self.max_line_bytes:
            csv.field_size_limit(self.max_line_bytes)
        lines = split_lines(decode_utf8(self._chunks, self.stats), self.max_line_bytes)
        bound = RecordBound(lines, self.max_line_bytes)
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
            if header_record is None:
                raise CrmFileRejection("empty_file", "file is empty: no header")
            header = map_header(header_record, self.max_fields)
            self.stats.header = tuple(truncate(h.strip()) for h in header_record)
            self.stats.extra_columns = header.extra_columns
            for record in reader:
                bound.reset()
                row += 1
                if not record:
                    self.stats.blank_lines += 1
                    continue
                if len(record) > self.max_fields:
                    raise CrmFileRejection(
                        "too_many_fields",
                        f"row {row} has {len(record)} fields, more than {self.max_fields} (CRM_MAX_FIELDS)",
                        row=row,
                    )
                self.stats.data_rows += 1
                result = validate_record(record, header, row)
                if isinstance(result, RowRejection):
                    self.stats.rejected_rows += 1
                else:
                    self.stats.valid_rows += 1
                yield result
        except csv.Error as exc:
            raise CrmFileRejection("malformed_csv", f"malformed CSV at row {row + 1}: {exc}", row=row + 1) from None
        if self.stats.data_rows == 0:
            raise CrmFileRejection("no_data_rows", "file has a header but no data rows")


def exceeds_threshold(rejected_rows: int, data_rows: int, threshold: float) -> bool:
    """True when the share of rejected rows is above the threshold (0..1)."""
    return data_rows > 0 and rejected_rows > threshold * data_rows
