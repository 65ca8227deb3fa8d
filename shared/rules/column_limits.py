"""The warehouse's column types, as validation rules for both inputs.

Azure SQL refuses a value that does not fit its column (string or binary data would be
truncated; arithmetic overflow), and it would refuse it in the middle of a bulk load, failing the
whole day. DuckDB's VARCHAR and BIGINT are wider, so without these rules the local engine would
stage what production rejects. Validating against these limits first rejects exactly the records
Azure SQL would, one by one, into the day's report, and stages the rest.

The numbers are those of sql/schema/0002_staging.sql; tests/unit/rules/test_column_limits.py
parses that DDL and fails when the two disagree.
"""

from __future__ import annotations

from typing import Final

# NVARCHAR(n): n UTF-16 code units (a character outside the BMP takes two).
CRM_TEXT_LENGTHS: Final[dict[str, int]] = {
    "company_id": 64,
    "company_name": 400,
    "country": 100,
    "industry_tag": 200,
}
USAGE_COMPANY_ID_LENGTH: Final[int] = 64

INT_MAX: Final[int] = 2**31 - 1  # T-SQL INT
BIGINT_MAX: Final[int] = 2**63 - 1  # T-SQL BIGINT
# stg.product_usage: active_users INT, events BIGINT (counts are also never negative).
USAGE_COUNT_MAX: Final[dict[str, int]] = {"active_users": INT_MAX, "events": BIGINT_MAX}

# Which table and column each limit comes from (what the DDL test checks).
SOURCES: Final[dict[tuple[str, str], tuple[str, int]]] = {
    **{("stg.crm_companies", column): ("NVARCHAR", n) for column, n in CRM_TEXT_LENGTHS.items()},
    ("stg.product_usage", "company_id"): ("NVARCHAR", USAGE_COMPANY_ID_LENGTH),
    ("stg.product_usage", "active_users"): ("INT", INT_MAX),
    ("stg.product_usage", "events"): ("BIGINT", BIGINT_MAX),
}


def utf16_length(value: str) -> int:
    """Length as NVARCHAR counts it: characters outside the BMP take two code units."""
    return len(value.encode("utf-16-le")) // 2


def length_over(value: str, limit: int) -> int | None:
    """The value's NVARCHAR length when it exceeds ``limit``, else None (cheap for short values)."""
    if len(value) * 2 <= limit:  # even all-astral characters would fit
        return None
    length = utf16_length(value)
    return length if length > limit else None
