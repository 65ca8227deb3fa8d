"""The sample CRM snapshots are deterministic, share the mock API's ids and carry the wrinkles."""

from __future__ import annotations

import csv
import datetime as dt
import io

from pipeline_tools.mock_usage_api import company_id as mock_api_company_id
from pipeline_tools.sample_data import COLUMNS, CrmSample, CrmSnapshotFile, company_id

START, END = dt.date(2025, 1, 1), dt.date(2025, 1, 30)


def _rows(file: CrmSnapshotFile) -> list[dict[str, str]]:
    """Read as the contract allows: BOM or not, header case-insensitive and trimmed."""
    reader = csv.reader(io.StringIO(file.content.decode("utf-8-sig"), newline=""))
    header = [h.strip().lower().replace("company_name", "name") for h in next(reader)]
    return [dict(zip(header, row, strict=True)) for row in reader]


def _by_id(file: CrmSnapshotFile) -> dict[str, dict[str, str]]:
    return {row["company_id"]: row for row in _rows(file)}


def test_ids_are_the_mock_apis_ids_and_files_are_named_by_day() -> None:
    sample = CrmSample(12, START, dt.date(2025, 1, 3), include_bad_file=False)
    files = list(sample.files())
    assert [f.blob_name for f in files] == ["crm_2025-01-01.csv", "crm_2025-01-02.csv", "crm_2025-01-03.csv"]
    assert [c.company_id for c in sample.companies] == [mock_api_company_id(n) for n in range(1, 13)]
    assert company_id(7) == "C000007"


def test_the_same_arguments_give_the_same_bytes() -> None:
    first = [f.content for f in CrmSample(50, START, END).files()]
    second = [f.content for f in CrmSample(50, START, END).files()]
    assert first == second
    assert first != [f.content for f in CrmSample(50, START, END, seed=8).files()]


def test_a_larger_sample_keeps_the_smaller_samples_companies_unchanged() -> None:
    small = {f.snapshot_date: _by_id(f) for f in CrmSample(30, START, END).files()}
    large = {f.snapshot_date: _by_id(f) for f in CrmSample(90, START, END).files()}
    for day, rows in small.items():
        assert {cid: large[day][cid] for cid in rows} == rows


def test_exactly_one_file_is_bad_and_it_lacks_a_required_column() -> None:
    sample = CrmSample(40, START, END)
    bad = [f for f in sample.files() if f.bad_reason]
    assert [f.snapshot_date for f in bad] == [sample.bad_date] == [dt.date(2025, 1, 16)]
    header = _rows(bad[0])[0].keys()
    assert "country" not in header
    assert {"company_id", "name"} <= set(header)


def test_good_files_parse_with_every_required_column_and_valid_timestamps() -> None:
    sample = CrmSample(200, START, END)
    for file in sample.files():
        if file.bad_reason:
            continue
        rows = _rows(file)
        assert len(rows) == file.rows > 0
        assert set(rows[0]) == set(COLUMNS)
        for row in rows:
            assert row["company_id"] and row["name"] and row["country"]
            if row["last_contact_at"]:
                stamp = dt.datetime.fromisoformat(row["last_contact_at"])
                assert stamp.date() <= file.snapshot_date


def test_the_sample_has_renames_moves_late_arrivals_and_departures() -> None:
    sample = CrmSample(200, START, END)
    files = {f.snapshot_date: _by_id(f) for f in sample.files() if not f.bad_reason}
    first, last = files[START], files[END]

    assert set(last) - set(first), "some companies appear late"
    assert set(first) - set(last), "some companies disappear"
    common = set(first) & set(last)
    assert any(first[c]["name"] != last[c]["name"] for c in common), "some companies are renamed"
    assert any(first[c]["country"] != last[c]["country"] for c in common), "some companies move"
    assert any("," in row["name"] for row in first.values()), "some names need RFC 4180 quoting"
    stamps = [r["last_contact_at"] for r in first.values()]
    assert any(s == "" for s in stamps)
    assert any(s.endswith("Z") for s in stamps)
    assert any(s and "T" not in s for s in stamps), "naive timestamps"
    assert any(s.endswith("+02:00") for s in stamps)


def test_header_variant_and_bom_each_appear_once() -> None:
    files = list(CrmSample(10, START, END).files())
    assert sum(f.content.startswith(b"\xef\xbb\xbf") for f in files) == 1
    assert sum(b"Company_Name" in f.content.split(b"\r\n", 1)[0] for f in files) == 1


def test_company_ids_on_a_day_are_the_ids_in_that_days_file() -> None:
    sample = CrmSample(120, START, END)
    for file in sample.files():
        assert sorted(sample.company_ids_on(file.snapshot_date)) == sorted(r["company_id"] for r in _rows(file))


def test_write_puts_one_file_per_day_in_the_directory(tmp_path) -> None:
    paths = CrmSample(5, START, dt.date(2025, 1, 4)).write(tmp_path / "crm")
    assert [p.name for p in paths] == [f"crm_2025-01-0{d}.csv" for d in (1, 2, 3, 4)]
    assert all(p.stat().st_size > 0 for p in paths)


def test_default_range_is_thirty_days_ending_yesterday_utc() -> None:
    sample = CrmSample(3)
    yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    assert (sample.start, sample.end, sample.days) == (yesterday - dt.timedelta(days=29), yesterday, 30)
