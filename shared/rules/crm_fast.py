"""The fast path of CRM CSV validation: clean files read and validated by Arrow, in C.

``ArrowCsvParser`` reads what ``CrmCsvParser`` (shared/rules/crm_rows.py, the exact path) reads,
but only files it can prove it reads the same way; on anything else it raises
``FastPathRefused`` and the caller starts over with the exact path. Equivalence therefore holds
by construction, and tests/unit/rules/test_crm_fast_path.py checks it on the exact path's own
tricky files.

The bytes are checked before Arrow's CSV reader sees them (a chunk at a time, in C: ``bytes``
methods and one regular expression). The fast path refuses a file with any of:
- invalid UTF-8, a control character other than tab/CR/LF, a CR not followed by LF;
- a blank line, or a line (record) of ``max_line_bytes`` or more;
- quoting outside strict RFC 4180 (a quote inside an unquoted field, text after a closing quote)
  or a quoted field holding a line break (so a record is exactly one line);
- a header that is not one clean line, or that ``map_header`` rejects; no data rows;
- a record whose width differs from the header's (Arrow's reader stops on it).
Those are exactly the cases where the exact path rejects the file, numbers rows differently or
must look at a record whole; files with them are rare and still handled, by the exact path.

The row rules are applied by column with Arrow compute: trimming, empty ``company_id``, lengths,
and ISO-8601 timestamps of the common shape ``YYYY-MM-DDTHH:MM:SS[.f{1,6}][Z|±HH:MM]`` (converted
to UTC and written back in ``isoformat`` form for the attributes hash). A row any of these checks
doubts (non-ASCII at a value's edge, where Python's ``strip`` and Arrow's trim may differ; a value
that may be too long; any other timestamp) goes to ``validate_record``, as in the exact path.
"""

from __future__ import annotations

import contextvars
import csv
import io
import re
import threading
from collections.abc import Iterable, Iterator
from itertools import chain
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from shared.rules.crm_rows import (
    _BOM,
    _NULL,
    _SEP,
    DEFAULT_MAX_FIELDS,
    DEFAULT_MAX_LINE_BYTES,
    MAX_LENGTHS,
    REQUIRED_COLUMNS,
    CrmFileRejection,
    CrmRow,
    DeferredHashes,
    HeaderMap,
    ParseStats,
    RowBatch,
    RowRejection,
    attributes_text,
    map_header,
    truncate,
    validate_record,
)

_BOM_BYTES = _BOM.encode("utf-8")
_CONTROL_BYTES = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Every byte but those: bytes.translate(None, _NOT_CONTROL) keeps only the control characters.
_NOT_CONTROL = bytes(b for b in range(256) if not _CONTROL_BYTES.match(bytes([b])))
# Strict RFC 4180 lines without line breaks inside quotes: a field is quoted whole or has no quote.
_FIELD = rb'(?:"(?:[^"\r\n]++|"")*+"|[^",\r\n]*+)'
_LINES = re.compile(rb"(?:" + _FIELD + rb"(?:," + _FIELD + rb")*+\r?\n)*+")
# The timestamps computed by column; anything else goes to parse_timestamp via validate_record.
_STAMP = (
    r"^[1-9]\d{3}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d"
    r"(?:\.\d{1,6})?(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)?$"
)
_NON_ASCII_EDGE = r"^[^\x00-\x7F]|[^\x00-\x7F]$"
# Arrow's reader needs a record to fit a block; records are bounded well below it.
_BLOCK_BYTES = 4 * 1024 * 1024
_MAX_FAST_LINE_BYTES = _BLOCK_BYTES // 2


class FastPathRefused(Exception):
    """The file has something only the exact path reproduces (the message says what)."""


class _CheckedBytes(io.RawIOBase):
    """The data lines after the header, for Arrow's reader, passed on only once checked.

    A refusal (or any error of the source, e.g. the blob changing) is kept and the stream ends
    there; ``ArrowCsvParser`` raises it once the reader returns, so the source's own exceptions
    arrive unchanged rather than wrapped by Arrow.
    """

    def __init__(self, pieces: Iterator[bytes]) -> None:
        super().__init__()
        self._pieces = pieces
        # Arrow calls readinto from its own I/O thread: the pieces (and the blob reads behind
        # them, with their trace spans) are produced in the caller's context, as if read here.
        self._context = contextvars.copy_context()
        self._buffer = b""
        self._offset = 0
        self.error: BaseException | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while self._offset >= len(self._buffer):
            if self.error is not None:
                return 0
            try:
                self._buffer, self._offset = self._context.run(next, self._pieces), 0
            except StopIteration:
                return 0
            except BaseException as exc:
                self.error = exc
                return 0
        size = min(len(target), len(self._buffer) - self._offset)
        target[:size] = self._buffer[self._offset : self._offset + size]
        self._offset += size
        return size


class ArrowCsvParser:
    """``batches()`` as CrmCsvParser's, for the files the fast path takes; ``FastPathRefused``
    for the others (before or after some batches: the caller discards what it has and starts
    over with the exact path). ``stats`` as CrmCsvParser's once all batches are read."""

    def __init__(
        self,
        chunks: Iterable[bytes],
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        max_fields: int = DEFAULT_MAX_FIELDS,
    ) -> None:
        self._chunks = chunks
        # A line of this many bytes, or more, goes to the exact path (which may accept it).
        self._line_bound = min(max_line_bytes - 2, _MAX_FAST_LINE_BYTES)
        self.max_fields = max_fields
        self.stats = ParseStats()

    def batches(self) -> Iterator[RowBatch]:
        chunks = iter(self._chunks)
        header_line, rest = self._header_line(chunks)
        header_record = _header_record(header_line)
        try:
            header = map_header(header_record, self.max_fields)
        except CrmFileRejection as exc:
            raise FastPathRefused(f"header: {exc.reason}") from None
        self.stats.header = tuple(truncate(h.strip()) for h in header_record)
        self.stats.extra_columns = header.extra_columns
        stream = _CheckedBytes(self._pieces(rest, chunks))
        names = [f"f{i}" for i in range(header.width)]
        try:
            reader = pa_csv.open_csv(
                stream,
                read_options=pa_csv.ReadOptions(column_names=names, block_size=_BLOCK_BYTES),
                parse_options=pa_csv.ParseOptions(newlines_in_values=False, ignore_empty_lines=False),
                convert_options=pa_csv.ConvertOptions(
                    column_types=dict.fromkeys(names, pa.string()),
                    include_columns=[names[p] for p in header.positions],
                    strings_can_be_null=False,
                    quoted_strings_can_be_null=False,
                    check_utf8=False,  # checked while passing the bytes on
                ),
            )
            row = 1
            for record_batch in reader:
                if stream.error is not None:
                    break
                if record_batch.num_rows:
                    yield self._validate(record_batch, header, row + 1)
                    row += record_batch.num_rows
        except pa.ArrowException as exc:  # ArrowInvalid ("Expected 5 columns"), or anything else
            if stream.error is None:
                raise FastPathRefused(f"Arrow's reader: {str(exc)[:200]}") from None
        if stream.error is not None:
            raise stream.error
        if self.stats.data_rows == 0:
            raise FastPathRefused("no data rows")

    def _header_line(self, chunks: Iterator[bytes]) -> tuple[bytes, bytes]:
        """The header's line (BOM and line ending removed) and the bytes after it."""
        buffer = b""
        for chunk in chunks:
            self.stats.bytes_read += len(chunk)
            buffer += chunk
            end = buffer.find(b"\n")
            if 0 <= end < self._line_bound:
                return buffer[:end].removeprefix(_BOM_BYTES).removesuffix(b"\r"), buffer[end + 1 :]
            if len(buffer) > self._line_bound:
                break
        raise FastPathRefused("no complete header line")

    def _pieces(self, rest: bytes, chunks: Iterator[bytes]) -> Iterator[bytes]:
        """The data bytes, in pieces that start a line and end one (the last piece: the file),
        each checked; a piece that fails a check refuses the file."""
        carry = b""
        first = True
        for chunk in chain([rest], self._counted(chunks)):
            buffer = carry + chunk
            if first and len(buffer) >= len(_BOM_BYTES):
                # Arrow's reader drops a BOM at the start of its stream, which here is the first
                # data row: a company_id of U+FEFF would lose it (the exact path keeps it).
                if buffer.startswith(_BOM_BYTES):
                    raise FastPathRefused("a BOM at the start of the first data row")
                first = False
            cut = buffer.rfind(b"\n") + 1
            carry = buffer[cut:]
            if len(carry) >= self._line_bound:
                raise FastPathRefused("a line of CRM_MAX_LINE_BYTES or more")
            if cut:
                yield self._checked(buffer[:cut])
        if carry:
            if first and carry.startswith(_BOM_BYTES):
                raise FastPathRefused("a BOM at the start of the first data row")
            yield self._checked(carry, last=True)

    def _counted(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            self.stats.bytes_read += len(chunk)
            yield chunk

    def _checked(self, piece: bytes, last: bool = False) -> bytes:
        if not piece.isascii():
            try:
                piece.decode("utf-8")
            except UnicodeDecodeError:
                raise FastPathRefused("invalid UTF-8") from None
        if piece.translate(None, _NOT_CONTROL):  # what is left once all but controls are deleted
            raise FastPathRefused("a control character")
        has_cr = b"\r" in piece
        if has_cr and piece.count(b"\r") != piece.count(b"\r\n"):
            raise FastPathRefused("a CR without LF")
        if b"\n\n" in piece or (has_cr and b"\n\r\n" in piece) or piece.startswith((b"\n", b"\r\n")):
            raise FastPathRefused("a blank line")
        # A line of _line_bound bytes holds a whole window of half that at a multiple of it: a
        # window without a line end refuses (lines of half the bound may be refused: that is safe).
        window = max(1, self._line_bound // 2)
        if any(piece.find(b"\n", start, start + window) < 0 for start in range(0, len(piece) - window + 1, window)):
            raise FastPathRefused("a line of CRM_MAX_LINE_BYTES or more")
        if b'"' in piece:
            whole = piece if not last else piece + b"\n"
            if _LINES.fullmatch(whole) is None:
                raise FastPathRefused("quoting outside strict RFC 4180, or a line break inside quotes")
        return piece

    def _validate(self, record_batch: pa.RecordBatch, header: HeaderMap, first_row: int) -> RowBatch:
        batch = validate_arrow_batch(record_batch.columns, first_row, header)
        self.stats.data_rows += record_batch.num_rows
        self.stats.valid_rows += len(batch)
        self.stats.rejected_rows += len(batch.rejections)
        return batch


def _header_record(line: bytes) -> list[str]:
    """The header as csv.reader reads it from its one line (which the exact path would too)."""
    if _CONTROL_BYTES.search(line) is not None or b"\r" in line or not line:
        raise FastPathRefused("header line")
    try:
        text = line.decode("utf-8")
        return next(csv.reader([text], strict=True))
    except (UnicodeDecodeError, csv.Error, StopIteration):
        raise FastPathRefused("header line") from None


# ---- the row rules by column ------------------------------------------------------------------
def validate_arrow_batch(raw: list[pa.Array], first_row: int, header: HeaderMap) -> RowBatch:
    """validate_batch for Arrow string columns (one per REQUIRED_COLUMNS entry, untrimmed) of
    consecutive records numbered from ``first_row``; the result's columns are Arrow arrays."""
    size = len(raw[0])
    rows = pa.array(range(first_row, first_row + size), pa.int64())
    trimmed = [pc.ascii_trim_whitespace(column) for column in raw]
    doubtful = pc.equal(trimmed[0], "")
    for column, values in zip(REQUIRED_COLUMNS, trimmed, strict=True):
        if not pc.all(pc.string_is_ascii(values)).as_py():
            doubtful = pc.or_(doubtful, pc.match_substring_regex(values, _NON_ASCII_EDGE))
        if column in MAX_LENGTHS:
            half = MAX_LENGTHS[column] // 2  # NVARCHAR counts an astral character twice
            # A value of at most ``half`` bytes has at most ``half`` characters: the byte lengths
            # (read from the offsets) spare most batches the count of characters.
            if (pc.max(pc.binary_length(values)).as_py() or 0) > half:
                doubtful = pc.or_(doubtful, pc.greater(pc.utf8_length(values), half))
    stamps, stamp_texts, stamp_doubtful = _timestamps(trimmed[4])
    doubtful = pc.or_(doubtful, stamp_doubtful)
    names, countries, industries = (_nulls(values) for values in trimmed[1:4])
    texts = _attribute_texts(names, countries, industries, stamp_texts)
    columns = [trimmed[0], names, countries, industries, stamps, texts, rows]
    if pc.any(doubtful).as_py():
        columns, rejections = _settle_doubtful(columns, raw, doubtful, header)
    else:
        rejections = []
    # Hashed by the thread that loads the batch (RowBatch.columns), beside the next batch's read.
    columns[5] = DeferredHashes(columns[5], _sha256_hex)
    return RowBatch.from_columns(columns, rejections)


def _nulls(values: pa.Array) -> pa.Array:
    return pc.if_else(pc.equal(values, ""), pa.scalar(None, pa.string()), values)


def _timestamps(texts: pa.Array) -> tuple[pa.Array, pa.Array, pa.Array]:
    """parse_timestamp by column for the common shape: naive UTC values, their isoformat text
    (NULL for an empty value), and which non-empty values were not computed (doubtful).

    A value of the shape is parsed by Arrow's ISO-8601 cast to a UTC timestamp, which applies
    the fraction and the offset in one pass; a value without a zone is naive UTC, so it gets a
    "Z". Years 1000 and 9999 are left to Python, so no conversion to UTC leaves the years
    1000-9998 that are written with four digits. The cast refuses a date that does not exist
    (02-30) for the whole batch: then those values are found and left to Python too."""
    empty = pc.equal(texts, "")
    shaped = pc.and_(
        pc.match_substring_regex(texts, _STAMP),  # no captures: RE2's fast matcher
        pc.invert(pc.or_(pc.starts_with(texts, "1000-"), pc.starts_with(texts, "9999-"))),
    )
    try:
        stamps = _utc_stamps(texts, shaped)
    except pa.ArrowInvalid:
        shaped = pc.and_(shaped, _real_dates(texts, shaped))
        try:
            stamps = _utc_stamps(texts, shaped)
        except pa.ArrowInvalid as exc:  # not expected: the exact path reads the file instead
            raise FastPathRefused(f"a timestamp Arrow's cast refused: {str(exc)[:200]}") from None
    doubtful = pc.and_(pc.invert(empty), pc.invert(shaped))
    return stamps, _isoformat(stamps), doubtful


def _utc_stamps(texts: pa.Array, shaped: pa.Array) -> pa.Array:
    """The shaped values as naive UTC timestamps, NULL elsewhere (others are cast as a harmless
    value, so that the cast fails only on a shaped one)."""
    texts = pc.if_else(shaped, texts, "2000-01-01T00:00:00Z")
    raw = texts.cast(pa.binary())  # byte slices: the shape is ASCII
    zoned = pc.or_(pc.ends_with(raw, b"Z"), pc.is_in(pc.binary_slice(raw, -6, -5), pa.array([b"+", b"-"])))
    utc = pc.if_else(zoned, texts, pc.binary_join_element_wise(texts, "Z", ""))
    stamps = pc.cast(pc.cast(utc, pa.timestamp("us", "UTC")), pa.timestamp("us"))
    return pc.if_else(shaped, stamps, pa.scalar(None, pa.timestamp("us")))


def _real_dates(texts: pa.Array, shaped: pa.Array) -> pa.Array:
    """False where a shaped value's date does not exist: strptime rolls 02-30 over into 03-02, so
    the day it gives back differs from the text's."""
    days = pc.if_else(shaped, texts, "2000-01-01")
    parsed = pc.strptime(pc.utf8_slice_codeunits(days, 0, 10), format="%Y-%m-%d", unit="s", error_is_null=True)
    same_day = pc.equal(pc.day(parsed), pc.cast(pc.utf8_slice_codeunits(days, 8, 10), pa.int64()))
    return pc.fill_null(same_day, False)


def _isoformat(stamps: pa.Array) -> pa.Array:
    """datetime.isoformat by column: Arrow's text "YYYY-MM-DD HH:MM:SS.ffffff" (years 1000-9998)
    with a T, the microseconds only when not zero."""
    text = pc.cast(stamps, pa.string())
    text = pc.if_else(pc.ends_with(text, ".000000"), pc.utf8_slice_codeunits(text, 0, 19), text)
    return pc.replace_substring(text, " ", "T", max_replacements=1)


def _attribute_texts(names: pa.Array, countries: pa.Array, industries: pa.Array, stamp_texts: pa.Array) -> pa.Array:
    """crm_rows.attributes_text by column: what the attributes hash is taken of."""
    return pc.binary_join_element_wise(
        *(pc.fill_null(values, _NULL) for values in (names, countries, industries, stamp_texts)), _SEP
    )


_HASHER = threading.local()


def _sha256_hex(values: pa.Array) -> pa.Array:
    """hashlib's ``sha256(value.encode()).hexdigest()`` of each value, by DuckDB's vectorised
    sha256 (twice as fast) in an in-memory connection of this thread; a compute kernel, no I/O.
    The fast path tests compare its hashes with the exact path's on tricky values."""
    con = getattr(_HASHER, "con", None)
    if con is None:
        con = _HASHER.con = duckdb.connect(":memory:", config={"threads": 1, "memory_limit": "256MB"})
    con.register("hash_input", pa.table({"value": values}))
    try:
        hashed = con.sql("SELECT sha256(value) AS digest FROM hash_input").to_arrow_table()
    finally:
        con.unregister("hash_input")
    return hashed.column("digest").combine_chunks().cast(pa.string())


def _settle_doubtful(
    columns: list[Any], raw: list[pa.Array], doubtful: pa.Array, header: HeaderMap
) -> tuple[list[Any], list[RowRejection]]:
    """validate_record on the doubtful rows: the batch's columns (``_TEXT_FIELDS``: the
    attributes_text where the hash goes) with its valid rows joined to the others in row order,
    and its rejections."""
    indices = pc.indices_nonzero(doubtful).to_pylist()
    raw_values = [column.take(pa.array(indices)).to_pylist() for column in raw]
    rows = columns[6].take(pa.array(indices)).to_pylist()
    rejections: list[RowRejection] = []
    settled: list[tuple[Any, ...]] = []
    for row, values in zip(rows, zip(*raw_values, strict=True), strict=True):
        result = validate_record(header.record(values), header, row)
        if isinstance(result, RowRejection):
            rejections.append(result)
        else:
            text = attributes_text(result.company_name, result.country, result.industry_tag, result.last_contact_at)
            settled.append((*result[:5], text, result.source_row))
    kept = pc.invert(doubtful)
    table = pa.table([pc.filter(column, kept) for column in columns], names=_TEXT_FIELDS)
    if settled:
        extra = pa.table(
            [pa.array(values, table.schema.field(i).type) for i, values in enumerate(zip(*settled, strict=True))],
            names=_TEXT_FIELDS,
        )
        table = pa.concat_tables([table, extra]).sort_by("source_row")
    return [table.column(name).combine_chunks() for name in _TEXT_FIELDS], rejections


# RowBatch's columns, in the same order, with each row's attributes_text where its hash goes.
_TEXT_FIELDS = [name if name != "attributes_hash" else "attributes_text" for name in CrmRow._fields]
