"""The column-wise batch validator gives exactly what the per-row rules give.

CrmCsvParser validates a batch of records column by column and hands the rows it doubts to
validate_record. Here its output (rows, rejections, their order, counts) is compared with the
reference: csv.reader plus validate_record on every record, the parser as it was before
batches. Tricky values are listed by hand and then mixed by Hypothesis; batches are made tiny
so that batch boundaries fall everywhere.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.rules.crm_rows import (
    CrmCsvParser,
    CrmFileRejection,
    CrmRow,
    RowRejection,
    map_header,
    validate_record,
)

CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # what the row rules reject
HEADER = ["company_id", "name", "country", "industry_tag", "last_contact_at"]

# Whitespace str.strip() removes but ASCII-minded code would not, and characters next to it.
SPACES = [" ", "\t", "\xa0", "\u3000", "\x85", "\u2028", "\u200b", "\ufeff"]
TIMESTAMPS = [
    "",
    "2025-01-01T00:01:00",
    "2025-01-01T00:01:00Z",
    "2025-01-01T00:01:00+02:00",
    "2025-01-01T00:01:00-00:00",
    "2025-01-01 23:59:59.123456+05:30",
    "2025-01-01T00:00:00.000000",
    "2025-01-01",
    "20250101",
    "2025-W01-1",
    "2025-02-30T00:00:00",
    "2025-01-01T24:00:00",
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-01:00",
    "not-a-date",
    " 2025-01-01T00:01:00Z ",
]
IDS = ["c1", "", "  ", "\xa0c1\xa0", "C1", "c" * 64, "c" * 65, "\U0001f600" * 32, "\U0001f600" * 33, "é" * 64]
NAMES = ["Acme", "", " Acme, Inc. ", "line\nbreak", 'say "hi"', "n" * 400, "n" * 401, "\U0001f600" * 201, "bell\x07"]
COUNTRIES = ["DE", "", "c" * 100, "c" * 101, "tab\there", "nul\x00"]
INDUSTRIES = ["saas", "", "i" * 200, "\U00010000" * 100, "\U00010000" * 101, "del\x7f"]


def reference(text: str) -> tuple[list[CrmRow | RowRejection], int, int]:
    """The per-row path: every record through validate_record (blank lines skipped)."""
    records = csv.reader(io.StringIO(text, newline=""), strict=True)
    header = map_header(next(records))
    items: list[CrmRow | RowRejection] = []
    blank = 0
    for row, record in enumerate(records, 2):
        if not record:
            blank += 1
            continue
        items.append(validate_record(record, header, row))
    return items, len(items), blank


def batched(text: str, batch_records: int) -> tuple[list[CrmRow | RowRejection], CrmCsvParser]:
    parser = CrmCsvParser([text.encode("utf-8")])
    parser.BATCH_RECORDS = batch_records
    return list(parser), parser


def csv_text(rows: list[list[str]], header: list[str] = HEADER) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        if row:
            writer.writerow(row)
        else:
            out.write("\n")  # a blank line
    return out.getvalue()


def assert_same(text: str, batch_records: int) -> None:
    expected, data_rows, blank = reference(text)
    if data_rows == 0:
        with pytest.raises(CrmFileRejection, match="no data rows"):
            batched(text, batch_records)
        return
    items, parser = batched(text, batch_records)
    assert items == expected
    assert parser.stats.data_rows == data_rows
    assert parser.stats.blank_lines == blank
    assert parser.stats.rejected_rows == sum(isinstance(i, RowRejection) for i in expected)
    assert parser.stats.valid_rows == sum(isinstance(i, CrmRow) for i in expected)


def tricky_rows() -> Iterator[list[str]]:
    for stamp in TIMESTAMPS:
        yield ["c1", "Acme", "DE", "saas", stamp]
    for company_id in IDS:
        yield [company_id, "Acme", "DE", "saas", ""]
    for name in NAMES:
        yield ["c2", name, "DE", "saas", "2025-01-01T00:01:00Z"]
    for country in COUNTRIES:
        yield ["c3", "Acme", country, "saas", ""]
    for industry in INDUSTRIES:
        yield ["c4", "Acme", "DE", industry, ""]
    for space in SPACES:
        yield [f"{space}c5{space}", f"{space}Acme{space}", space, f"{space}saas", f"2025-01-01T00:01:00{space}"]
    yield ["c6", "too", "few"]
    yield ["c7", "Acme", "DE", "saas", "", "one too many"]
    yield []
    yield ["c1", "Acme again (the last occurrence)", "DE", "saas", ""]


@pytest.mark.parametrize("batch_records", [1, 2, 7, 50_000])
def test_every_tricky_row_is_validated_as_the_per_row_rules_do(batch_records: int) -> None:
    assert_same(csv_text(list(tricky_rows())), batch_records)


@pytest.mark.parametrize("batch_records", [1, 7, 50_000])
def test_tricky_rows_in_a_file_without_control_characters_take_the_column_path_alike(batch_records: int) -> None:
    # One control character anywhere sends every later batch through the per-row search;
    # without any, the column path alone decides.
    clean = [r for r in tricky_rows() if not CONTROL.search("".join(r))]
    assert_same(csv_text(clean), batch_records)


def test_a_control_character_only_in_an_ignored_column_changes_nothing() -> None:
    text = csv_text([["c1", "Acme", "DE", "saas", "", "bell\x07"]], [*HEADER, "notes"])
    assert_same(text, 50_000)


def test_columns_in_another_order_with_an_alias_are_validated_the_same() -> None:
    header = ["last_contact_at", "Company_Name", "extra", "industry_tag", "country", "company_id"]
    rows = [[r[4], r[1], "x", r[3], r[2], r[0]] for r in tricky_rows() if len(r) == 5]
    assert_same(csv_text(rows, header), 3)


_pieces = st.sampled_from(
    SPACES + TIMESTAMPS + IDS + NAMES + COUNTRIES + INDUSTRIES + ["\r\n", ",", '"', "\x1f", "\x00"]
)
_value = st.one_of(
    st.lists(_pieces, max_size=3).map("".join),
    st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\r"), max_size=12),
)
_row = st.one_of(
    st.lists(_value, min_size=5, max_size=5),
    st.lists(_value, min_size=0, max_size=7),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(_row, max_size=12), batch_records=st.integers(1, 5))
def test_any_file_is_validated_as_the_per_row_rules_do(rows: list[list[str]], batch_records: int) -> None:
    assert_same(csv_text(rows), batch_records)
