"""The fast path (ArrowCsvParser) reads a file exactly as the exact path (CrmCsvParser) does, or
refuses it.

Every file here goes through both: when the fast path takes it, the rows, rejections, their
order and the counts must be the exact path's; when the exact path rejects the file, the fast
path must have refused it (the service then reads it again with the exact path). Clean files of
the common shapes must be taken, or the fast path would be no faster.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.rules import crm_fast
from shared.rules.crm_fast import ArrowCsvParser, FastPathRefused
from shared.rules.crm_rows import CrmCsvParser, CrmFileRejection

HEADER = ["company_id", "name", "country", "industry_tag", "last_contact_at"]
SPACES = [" ", "\t", "\xa0", "\u3000", "\x85", "\u2028", "\u200b", "\ufeff"]
TIMESTAMPS = [
    "",
    "2025-01-01T00:01:00",
    "2025-01-01T00:01:00Z",
    "2025-01-01T00:01:00+02:00",
    "2025-01-01T00:01:00-00:00",
    "2025-01-01T00:01:00.5Z",
    "2025-01-01T00:01:00.123+05:30",
    "2025-01-01T00:01:00.000000",
    "2025-01-01T00:01:00.000001-23:59",
    "2025-12-31T23:30:00-01:00",
    "2025-01-01T00:30:00+23:59",
    "2024-02-29T12:00:00",
    "2023-02-29T12:00:00",
    "2025-04-31T00:00:00",
    "2025-00-10T00:00:00",
    "2025-13-10T00:00:00",
    "2025-01-00T00:00:00",
    "2025-01-01T23:59:60",
    "2025-01-01T24:00:00",
    "2025-01-01T00:00:00+24:00",
    "2025-01-01T00:00:00+02",
    "2025-01-01T00:00:00+0200",
    "2025-01-01T00:00:00.1234567",
    "2025-01-01 23:59:59.123456+05:30",
    "2025-01-01t00:00:00z",
    "2025-01-01",
    "20250101",
    "1000-01-01T00:00:00+01:00",
    "1000-01-01T00:00:00-01:00",
    "1001-01-01T00:00:00+01:00",
    "0999-12-31T23:00:00",
    "9998-12-31T23:00:00-05:00",
    "9999-12-31T23:59:59-01:00",
    "9999-12-31T23:59:59+01:00",
    "0001-01-01T00:00:00+01:00",
    "not-a-date",
    " 2025-01-01T00:01:00Z ",
    "\xa02025-01-01T00:01:00Z",
    "２０２５-01-01T00:00:00",
]
IDS = ["c1", "", "  ", "\xa0c1\xa0", "C1", "c" * 64, "c" * 65, "\U0001f600" * 32, "\U0001f600" * 33, "é" * 64]
NAMES = ["Acme", "", " Acme, Inc. ", 'say "hi"', '"quoted"', "n" * 400, "n" * 401, "\U0001f600" * 201, "Zoë", "é "]
COUNTRIES = ["DE", "", "c" * 100, "c" * 101, "tab\there", " \u3000DE"]
INDUSTRIES = ["saas", "", "i" * 200, "\U00010000" * 100, "\U00010000" * 101, "x\u2028"]


def run(parser_type: Any, data: bytes, chunk: int) -> tuple[list[Any], Any]:
    parser = parser_type([data[i : i + chunk] for i in range(0, len(data), chunk)] or [b""])
    items = [item for batch in parser.batches() for item in batch.items()]
    return items, parser.stats


def fast_or_refused(data: bytes, chunk: int = 1 << 20) -> tuple[list[Any], Any] | None:
    """The fast path's output, or None when it refused the file; asserts it equals the exact
    path's whenever it took it."""
    try:
        exact: tuple[list[Any], Any] | None = run(CrmCsvParser, data, chunk)
    except CrmFileRejection:
        exact = None
    try:
        fast = run(ArrowCsvParser, data, chunk)
    except FastPathRefused:
        return None
    assert exact is not None, "the fast path took a file the exact path rejects"
    assert fast[0] == exact[0]
    assert fast[1] == exact[1]
    return fast


def csv_bytes(rows: list[list[str]], header: list[str] = HEADER, ending: str = "\n", bom: bool = False) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=ending)
    writer.writerow(header)
    for row in rows:
        if row:
            writer.writerow(row)
        else:
            out.write(ending)
    return (("\ufeff" if bom else "") + out.getvalue()).encode("utf-8")


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
    yield ["c1", "Acme again (the last occurrence)", "DE", "saas", ""]


@pytest.mark.parametrize("ending", ["\n", "\r\n"])
@pytest.mark.parametrize("bom", [False, True])
@pytest.mark.parametrize("chunk", [1, 7, 1 << 20])
def test_tricky_values_in_a_clean_file_are_validated_as_the_exact_path_does(ending: str, bom: bool, chunk: int) -> None:
    assert fast_or_refused(csv_bytes(list(tricky_rows()), ending=ending, bom=bom), chunk) is not None


def test_columns_in_another_order_with_an_alias_and_extra_columns_take_the_fast_path() -> None:
    header = ["Last_Contact_At ", "company_name", "notes", "industry_tag", " COUNTRY", "company_id"]
    rows = [[r[4], r[1], "x, y", r[3], r[2], r[0]] for r in tricky_rows()]
    fast = fast_or_refused(csv_bytes(rows, header))
    assert fast is not None and fast[1].extra_columns == ("notes",)


def test_a_file_without_a_final_line_ending_takes_the_fast_path() -> None:
    assert fast_or_refused(csv_bytes([["c1", "A", "DE", "saas", ""]]).rstrip(b"\n")) is not None


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(csv_bytes([["c1", "line\nbreak", "DE", "", ""]]), id="line break inside quotes"),
        pytest.param(csv_bytes([["c1", "A", "DE", "", ""], [], ["c2", "B", "DE", "", ""]]), id="blank line"),
        pytest.param(csv_bytes([["c1", "A", "DE", "", ""]]) + b"\n", id="blank last line"),
        pytest.param(b"\n" + csv_bytes([["c1", "A", "DE", "", ""]]), id="blank line before the header"),
        pytest.param(csv_bytes([["c1", "A", "DE"]]), id="too few fields"),
        pytest.param(csv_bytes([["c1", "A", "DE", "", "", "more"]]), id="too many fields"),
        pytest.param(csv_bytes([["c1", "A", "DE", "", ""]]) + b'c2,"B"x,DE,,\n', id="text after a closing quote"),
        pytest.param(csv_bytes([["c1", "A", "DE", "", ""]]) + b'c2,B"x,DE,,\n', id="quote inside an unquoted field"),
        pytest.param(csv_bytes([["c1", "A", "DE", "", ""]]) + b'c2,"a,"x,DE,,\n', id="closing quote after a comma"),
        pytest.param(csv_bytes([["c1", "A", "DE", "", ""]]) + b'c2,"unterminated,DE,,\n', id="unterminated quote"),
        pytest.param(csv_bytes([["c1", "bell\x07", "DE", "", ""]]), id="control character"),
        pytest.param(csv_bytes([["c1", "A", "DE", "", ""]]) + b"c2,\xff,DE,,\n", id="invalid UTF-8"),
        pytest.param(csv_bytes([["c1", "A", "DE", "", ""]], ending="\r"), id="CR line endings"),
        pytest.param(csv_bytes([["c1", "A\rB", "DE", "", ""]]), id="CR inside quotes"),
        pytest.param(csv_bytes([]), id="header only"),
        pytest.param(b"", id="empty file"),
        pytest.param(b"company_id,name,country\nc1,A,DE\n", id="missing column"),
        pytest.param(b'"company_id\n",name,country,industry_tag,last_contact_at\nc1,A,DE,,\n', id="multi-line header"),
        pytest.param(csv_bytes([["c1", "A" * 2_000_000, "DE", "", ""]]), id="line over CRM_MAX_LINE_BYTES"),
        pytest.param(b"company_id" + b"," * 5_000_000 + b"\n", id="header of commas"),
        # Arrow drops a BOM at the start of its stream (the first data row): the id would vanish.
        pytest.param(csv_bytes([["\ufeff", "", "", "", ""]]), id="BOM as the first data row's id"),
        pytest.param(csv_bytes([["\ufeffc1", "A", "DE", "", ""]]), id="BOM starting the first data row"),
    ],
)
def test_files_only_the_exact_path_reads_right_are_refused(data: bytes) -> None:
    with pytest.raises(FastPathRefused):
        for _ in ArrowCsvParser([data]).batches():
            pass


def test_an_error_of_the_source_arrives_unchanged() -> None:
    class Gone(Exception):
        pass

    def chunks() -> Iterator[bytes]:
        yield csv_bytes([["c1", "A", "DE", "", ""]] * 10)
        raise Gone

    with pytest.raises(Gone):
        for _ in ArrowCsvParser(chunks()).batches():
            pass


_pieces = st.sampled_from(SPACES + TIMESTAMPS + IDS + NAMES + COUNTRIES + INDUSTRIES + [",", '"', '""'])
_value = st.one_of(
    st.lists(_pieces, max_size=3).map("".join),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=12),
)
_row = st.one_of(
    st.lists(_value, min_size=5, max_size=5),
    st.lists(_value, min_size=0, max_size=7),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(_row, max_size=12),
    ending=st.sampled_from(["\n", "\r\n"]),
    bom=st.booleans(),
    chunk=st.integers(1, 7),
    raw_tail=st.sampled_from([b"", b"\n", b'x,"a"b,,,\n', b'"', b"\r", b"\xc3", b"c9,a,b,c,d"]),
)
def test_any_file_is_read_as_the_exact_path_does_or_refused(
    rows: list[list[str]], ending: str, bom: bool, chunk: int, raw_tail: bytes
) -> None:
    fast_or_refused(csv_bytes(rows, ending=ending, bom=bom) + raw_tail, chunk)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(st.lists(st.sampled_from(TIMESTAMPS + NAMES[:5] + ["c1", "x"]), min_size=5, max_size=5), min_size=1)
)
def test_clean_files_take_the_fast_path(rows: list[list[str]]) -> None:
    rows = [["c1", *row[1:]] for row in rows]  # a non-empty id keeps the file from "no data rows"
    assert fast_or_refused(csv_bytes(rows), 5) is not None


def test_common_values_are_settled_by_column_without_the_per_row_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    # Only a doubted row costs validate_record; the usual shapes must never be doubted.
    def per_row(*_: Any) -> None:
        raise AssertionError("a common value was handed to validate_record")

    monkeypatch.setattr(crm_fast, "_settle_doubtful", per_row)
    stamps = [
        "",
        "2025-01-01T00:01:00",
        "2025-01-01T00:01:00Z",
        "2025-06-30T23:59:59.123+02:00",
        "2025-01-01T00:01:00.5",
    ]
    rows = [[f"c{i}", f"Company {i}, Ltd", "DE", "", stamps[i % 5]] for i in range(50)]
    rows.append(["c9", " Zoë Ltd ", "FR", "saas", " 2025-01-01T00:01:00-05:30 "])  # non-ASCII inside a value
    assert fast_or_refused(csv_bytes(rows)) is not None


def test_a_date_that_does_not_exist_is_left_to_the_per_row_rules_and_the_rest_settled_by_column(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Arrow's ISO-8601 cast refuses 02-30 for the whole batch: only that row may reach validate_record.
    doubted: list[list[Any]] = []
    settle = crm_fast._settle_doubtful

    def recording(columns: Any, raw: Any, doubtful: Any, header: Any) -> Any:
        doubted.append([value.as_py() for value, doubt in zip(raw[4], doubtful, strict=True) if doubt.as_py()])
        return settle(columns, raw, doubtful, header)

    monkeypatch.setattr(crm_fast, "_settle_doubtful", recording)
    rows = [[f"c{i}", "Acme", "DE", "saas", f"2025-02-{i % 28 + 1:02d}T10:00:00+02:00"] for i in range(30)]
    rows[7][4] = "2025-02-30T10:00:00"
    taken = fast_or_refused(csv_bytes(rows))
    assert taken is not None
    assert doubted == [["2025-02-30T10:00:00"]]
    assert taken[1].rejected_rows == 1
