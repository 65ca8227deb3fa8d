"""Every validation rule of the CRM snapshot CSV, each with a small hand-written file."""

from __future__ import annotations

import datetime as dt

import pytest

from shared.rules.crm_rows import (
    CrmCsvParser,
    CrmFileRejection,
    CrmRow,
    RowRejection,
    attributes_hash,
    exceeds_threshold,
    split_lines,
)

HEADER = "company_id,name,country,industry_tag,last_contact_at\n"


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def parse(text: str | bytes, chunk_size: int = 1 << 20) -> tuple[list[CrmRow], list[RowRejection], CrmCsvParser]:
    data = text.encode("utf-8") if isinstance(text, str) else text
    parser = CrmCsvParser(chunked(data, chunk_size))
    items = list(parser)
    rows = [i for i in items if isinstance(i, CrmRow)]
    rejections = [i for i in items if isinstance(i, RowRejection)]
    return rows, rejections, parser


def rejection_of(text: str | bytes) -> CrmFileRejection:
    with pytest.raises(CrmFileRejection) as info:
        parse(text)
    return info.value


# ---- a good file -----------------------------------------------------------------------------
def test_valid_rows_are_trimmed_and_empty_values_become_null() -> None:
    rows, rejections, parser = parse(HEADER + " c1 , Acme ,  DE ,, 2025-11-30T10:00:00Z \nc2,Beta,,,\n")
    assert rejections == []
    assert [(r.company_id, r.company_name, r.country, r.industry_tag, r.last_contact_at) for r in rows] == [
        ("c1", "Acme", "DE", None, dt.datetime(2025, 11, 30, 10, 0)),
        ("c2", "Beta", None, None, None),
    ]
    assert (parser.stats.data_rows, parser.stats.valid_rows, parser.stats.rejected_rows) == (2, 2, 0)


def test_row_numbers_count_records_with_the_header_as_row_one() -> None:
    text = HEADER + 'c1,"two\nlines",DE,x,\nc2,B,DE,x,\n\nc3,C,DE,x,\n'
    rows, _, parser = parse(text)
    # c1 is record 2 (its value spans two lines), c2 record 3, the blank line record 4, c3 record 5.
    assert [(r.company_id, r.source_row) for r in rows] == [("c1", 2), ("c2", 3), ("c3", 5)]
    assert parser.stats.blank_lines == 1


# ---- header ----------------------------------------------------------------------------------
def test_header_names_are_trimmed_and_case_insensitive_in_any_order() -> None:
    rows, _, _ = parse(" Last_Contact_At ,COUNTRY, Company_ID ,Industry_Tag,NAME\n2025-01-01,DE,c1,saas,Acme\n")
    assert rows[0][:5] == ("c1", "Acme", "DE", "saas", dt.datetime(2025, 1, 1))


def test_company_name_is_accepted_for_name() -> None:
    rows, _, _ = parse("company_id,company_name,country,industry_tag,last_contact_at\nc1,Acme,DE,x,\n")
    assert rows[0].company_name == "Acme"


def test_extra_columns_are_ignored_and_reported() -> None:
    rows, _, parser = parse("company_id,name,owner,country,industry_tag,last_contact_at,Notes\nc1,A,bob,DE,x,,hi\n")
    assert rows[0][:4] == ("c1", "A", "DE", "x")
    assert parser.stats.extra_columns == ("owner", "Notes")


def test_missing_required_column_rejects_the_file_naming_it() -> None:
    rejection = rejection_of("company_id,name,industry_tag\nc1,A,x\n")
    assert rejection.reason == "missing_columns"
    assert "country" in str(rejection) and "last_contact_at" in str(rejection)


def test_name_and_company_name_together_reject_the_file_as_ambiguous() -> None:
    rejection = rejection_of("company_id,name,company_name,country,industry_tag,last_contact_at\nc1,A,B,DE,x,\n")
    assert rejection.reason == "duplicate_column"


def test_empty_file_is_rejected() -> None:
    assert rejection_of(b"").reason == "empty_file"


def test_header_without_data_rows_is_rejected() -> None:
    assert rejection_of(HEADER + "\n\n").reason == "no_data_rows"


# ---- encoding --------------------------------------------------------------------------------
def test_utf8_bom_is_dropped_before_the_header() -> None:
    rows, _, _ = parse(b"\xef\xbb\xbf" + (HEADER + "c1,Müller GmbH,DE,x,\n").encode("utf-8"), chunk_size=2)
    assert rows[0].company_name == "Müller GmbH"


def test_multibyte_characters_split_across_chunks_decode_intact() -> None:
    rows, _, _ = parse(HEADER + "c1,Société 東京 🚀,FR,x,\n", chunk_size=1)
    assert rows[0].company_name == "Société 東京 🚀"


@pytest.mark.parametrize("chunk_size", [1, 3, 1 << 20])
def test_invalid_utf8_rejects_the_file_with_the_byte_offset(chunk_size: int) -> None:
    data = (HEADER + "c1,M").encode("utf-8") + b"\xfcller,DE,x,\n"  # latin-1 ü
    with pytest.raises(CrmFileRejection) as info:
        parse(data, chunk_size=chunk_size)
    assert info.value.reason == "invalid_utf8"
    assert info.value.byte_offset == len(HEADER) + 4
    assert f"byte offset {len(HEADER) + 4}" in str(info.value)


def test_truncated_multibyte_character_at_end_of_file_rejects_the_file() -> None:
    data = (HEADER + "c1,A,DE,x,\n").encode("utf-8") + b"\xe6\x9d"
    with pytest.raises(CrmFileRejection) as info:
        parse(data, chunk_size=4)
    assert info.value.reason == "invalid_utf8"
    assert info.value.byte_offset == len(data) - 2


# ---- RFC 4180 --------------------------------------------------------------------------------
def test_quoted_fields_keep_commas_newlines_and_escaped_quotes() -> None:
    rows, _, _ = parse(HEADER + 'c1,"Acme, Inc.","D""E","multi\r\nline",\n', chunk_size=5)
    assert rows[0][:4] == ("c1", "Acme, Inc.", 'D"E', "multi\r\nline")


def test_crlf_line_endings_split_between_chunks_are_one_line_end() -> None:
    text = HEADER.replace("\n", "\r\n") + "c1,A,DE,x,\r\nc2,B,DE,x,\r\n"
    for size in range(1, 12):
        rows, rejections, _ = parse(text, chunk_size=size)
        assert [r.company_id for r in rows] == ["c1", "c2"] and rejections == []


def test_split_lines_does_not_break_on_unicode_line_separators() -> None:
    assert list(split_lines(["a\u2028b\x85c\n", "d\re\r\nf"])) == ["a\u2028b\x85c\n", "d\r", "e\r\n", "f"]


def test_malformed_quoting_rejects_the_file() -> None:
    rejection = rejection_of(HEADER + 'c1,"Acme"x,DE,x,\n')
    assert rejection.reason == "malformed_csv"
    assert rejection.row == 2


def test_unterminated_quote_rejects_the_file() -> None:
    assert rejection_of(HEADER + 'c1,"Acme,DE,x,\n').reason == "malformed_csv"


# ---- row rules -------------------------------------------------------------------------------
def test_empty_company_id_rejects_the_row() -> None:
    rows, rejections, _ = parse(HEADER + "  ,Acme,DE,x,\nc2,B,DE,x,\n")
    assert [r.company_id for r in rows] == ["c2"]
    assert rejections[0].row == 2
    assert [(p.column, p.reason) for p in rejections[0].problems] == [("company_id", "empty company_id")]


@pytest.mark.parametrize(
    "value", ["yesterday", "2025-13-01", "2025-11-30T25:00:00", "30/11/2025", "2025-11-30T10:00+25:00"]
)
def test_unparsable_last_contact_at_rejects_the_row(value: str) -> None:
    _, rejections, _ = parse(HEADER + f"c1,A,DE,x,{value}\n")
    problem = rejections[0].problems[0]
    assert (problem.column, problem.value, problem.reason) == ("last_contact_at", value, "not an ISO-8601 timestamp")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025-11-30T10:00:00+02:00", dt.datetime(2025, 11, 30, 8, 0)),
        ("2025-11-30T23:30:00-01:00", dt.datetime(2025, 12, 1, 0, 30)),
        ("2025-11-30T10:00:00Z", dt.datetime(2025, 11, 30, 10, 0)),
        ("2025-11-30T10:00:00", dt.datetime(2025, 11, 30, 10, 0)),  # naive: UTC
        ("2025-11-30 10:00:00.123456", dt.datetime(2025, 11, 30, 10, 0, 0, 123456)),
        ("2025-11-30", dt.datetime(2025, 11, 30)),
        ("", None),
    ],
)
def test_last_contact_at_is_converted_to_naive_utc(value: str, expected: dt.datetime | None) -> None:
    rows, _, _ = parse(HEADER + f"c1,A,DE,x,{value}\n")
    assert rows[0].last_contact_at == expected


@pytest.mark.parametrize(
    ("column", "limit"), [("company_id", 64), ("name", 400), ("country", 100), ("industry_tag", 200)]
)
def test_value_longer_than_its_column_rejects_the_row(column: str, limit: int) -> None:
    def row_with(value: str) -> str:
        values = {"company_id": "c1", "name": "A", "country": "DE", "industry_tag": "x", "last_contact_at": ""}
        values[column] = value
        return ",".join(values.values()) + "\n"

    rows, rejections, _ = parse(HEADER + row_with("a" * limit) + row_with("b" * (limit + 1)))
    assert len(rows) == 1
    problem = rejections[0].problems[0]
    assert problem.column == column
    assert problem.reason == f"too long: {limit + 1} > {limit} characters"
    assert len(problem.value or "") <= 201  # values in reports are truncated


def test_characters_outside_the_bmp_count_twice_as_nvarchar_does() -> None:
    _, rejections, _ = parse(HEADER + "c1,A," + "🚀" * 51 + ",x,\n")  # 102 UTF-16 code units > 100
    assert rejections[0].problems[0].reason == "too long: 102 > 100 characters"


@pytest.mark.parametrize("char", ["\x00", "\x07", "\x1b", "\x7f", "\x0c"])
def test_control_characters_reject_the_row(char: str) -> None:
    rows, rejections, _ = parse(HEADER + f"c1,Ac{char}me,DE,x,\nc2,B,DE,x,\n")
    assert [r.company_id for r in rows] == ["c2"]
    assert [(p.column, p.reason) for p in rejections[0].problems] == [("name", "contains a control character")]


def test_tab_and_embedded_newlines_are_allowed() -> None:
    rows, rejections, _ = parse(HEADER + 'c1,"A\tB\r\nC",DE,x,\n')
    assert rejections == [] and rows[0].company_name == "A\tB\r\nC"


def test_wrong_number_of_fields_rejects_the_row() -> None:
    _, rejections, _ = parse(HEADER + "c1,A,DE\nc2,B,DE,x,,extra\n")
    assert [(r.row, r.problems[0].reason) for r in rejections] == [
        (2, "expected 5 fields, found 3"),
        (3, "expected 5 fields, found 6"),
    ]


def test_every_problem_of_a_row_is_reported() -> None:
    _, rejections, _ = parse(HEADER + ",A," + "c" * 101 + ",x,not-a-date\n")
    assert [p.column for p in rejections[0].problems] == ["company_id", "country", "last_contact_at"]


def test_a_one_megabyte_field_is_read_and_rejected_as_too_long_not_as_a_csv_error() -> None:
    rows, rejections, _ = parse(HEADER + "c1," + "x" * 1_000_000 + ",DE,x,\nc2,B,DE,x,\n", chunk_size=65536)
    assert [r.company_id for r in rows] == ["c2"]
    assert rejections[0].problems[0].reason == "too long: 1000000 > 400 characters"


def test_a_one_megabyte_value_in_an_ignored_column_does_not_matter() -> None:
    rows, _, _ = parse(
        "company_id,name,country,industry_tag,last_contact_at,notes\nc1,A,DE,x,," + "y" * 1_000_000 + "\n"
    )
    assert rows[0].company_id == "c1"


def test_sql_in_a_value_is_just_text() -> None:
    rows, _, _ = parse(HEADER + 'c1,"\'); DROP TABLE x;--",DE,x,\n')
    assert rows[0].company_name == "'); DROP TABLE x;--"


# ---- threshold and attributes ------------------------------------------------------------
@pytest.mark.parametrize(
    ("rejected", "data", "expected"), [(5, 100, False), (6, 100, True), (0, 0, False), (1, 1, True), (0, 10, False)]
)
def test_reject_threshold_is_exceeded_only_above_the_share(rejected: int, data: int, expected: bool) -> None:
    assert exceeds_threshold(rejected, data, 0.05) is expected


def test_attributes_hash_tells_null_from_values_and_changes_with_every_attribute() -> None:
    base = ("Acme", "DE", "saas", dt.datetime(2025, 1, 1))
    hashes = {
        attributes_hash(*base),
        attributes_hash(None, "DE", "saas", dt.datetime(2025, 1, 1)),
        attributes_hash("Acme", None, "saas", dt.datetime(2025, 1, 1)),
        attributes_hash("Acme", "DE", None, dt.datetime(2025, 1, 1)),
        attributes_hash("Acme", "DE", "saas", None),
        attributes_hash("Acme", "DE", "saas", dt.datetime(2025, 1, 1, 0, 0, 1)),
        attributes_hash("AcmeDE", None, "saas", dt.datetime(2025, 1, 1)),
    }
    assert len(hashes) == 7
    assert attributes_hash(*base) == attributes_hash(*base)


# ---- memory bounds (CRM_MAX_LINE_BYTES, CRM_MAX_FIELDS) ----------------------------------------
def bounded(text: str, max_line_bytes: int = 1024, max_fields: int = 10) -> CrmFileRejection:
    parser = CrmCsvParser([text.encode("utf-8")], max_line_bytes=max_line_bytes, max_fields=max_fields)
    with pytest.raises(CrmFileRejection) as info:
        list(parser)
    return info.value


def test_a_line_longer_than_the_limit_rejects_the_file_without_holding_it() -> None:
    error = bounded(HEADER + "c1," + "x" * 2000 + ",DE,x,\n")
    assert error.reason == "line_too_long" and "CRM_MAX_LINE_BYTES" in str(error)


def test_a_record_spread_over_many_short_quoted_lines_is_bounded_like_one_line() -> None:
    field = "\n".join(["short line"] * 200)  # 200 physical lines of 11 bytes: one 2.2 KB record
    assert bounded(HEADER + f'c1,"{field}",DE,x,\n').reason == "line_too_long"


def test_many_small_records_within_the_limit_are_fine() -> None:
    text = HEADER + "".join(f"c{i},Name {i},DE,x,\n" for i in range(500))  # 9 KB in all, short records
    parser = CrmCsvParser([text.encode("utf-8")], max_line_bytes=1024, max_fields=10)
    assert sum(isinstance(i, CrmRow) for i in parser) == 500


def test_a_header_or_record_with_too_many_fields_rejects_the_file() -> None:
    assert bounded(HEADER.rstrip("\n") + ",x" * 20 + "\n" + "c1,a,b,c,d\n").reason == "too_many_fields"
    error = bounded(HEADER + "c1,a,b,c,d" + ",x" * 20 + "\n")
    assert (error.reason, error.row) == ("too_many_fields", 2)


def test_a_multibyte_line_counts_bytes_not_characters() -> None:
    assert bounded(HEADER + "c1," + "é" * 600 + ",DE,x,\n").reason == "line_too_long"  # 1,200 bytes
