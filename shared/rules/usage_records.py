"""Validation and de-duplication of Product Usage API records (pure: no I/O).

The same screen runs when a pull lands (to write the manifest and the rejects report) and when
staging reads the raw NDJSON back (to load), so a replay from raw stages exactly what the pull
staged.

Rules (SPEC section 2):
- A record must be a JSON object with a non-empty string ``company_id``, ``date`` equal to the
  requested day, and ``active_users`` / ``events`` that are non-negative JSON integers. ``true`` is
  not an integer (Python's bool is an int subclass), nor is ``"5"`` or ``5.0``: schema drift must
  be seen, not coerced. Failures are rejected into a report with their reason.
- The warehouse's column types are rules too (shared/rules/column_limits.py): a ``company_id``
  longer than NVARCHAR(64), ``active_users`` above INT or ``events`` above BIGINT is rejected
  here, record by record, instead of failing the whole day's load on Azure SQL (or, on DuckDB,
  being staged although production would refuse it).
- A record repeated across pages is loaded once. Identical repeats collapse silently (counted).
  Conflicting repeats for one company keep the record with the largest
  ``(active_users, events)``: a rule that does not depend on page order, so any re-pull of the
  same content stages the same rows. They are counted and reported.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from shared.rules.column_limits import USAGE_COMPANY_ID_LENGTH, USAGE_COUNT_MAX, length_over

COUNT_FIELDS = ("active_users", "events")
MAX_REPORTED = 1000  # samples kept in a report; the counts are always complete
_MAX_RAW_CHARS = 500


@dataclass(frozen=True, order=True)
class UsageRecord:
    company_id: str
    activity_date: dt.date
    active_users: int
    events: int


@dataclass(frozen=True)
class RejectedRecord:
    line: int  # 1-based line of the raw NDJSON
    reason: str
    raw: str  # the record as received, truncated


@dataclass(frozen=True)
class Conflict:
    company_id: str
    kept: tuple[int, int]
    dropped: tuple[int, int]


def check_record(raw: Any, requested: dt.date) -> UsageRecord | str:
    """The valid record, or the reason it is rejected."""
    if not isinstance(raw, dict):
        return "not_an_object"
    company_id = raw.get("company_id")
    if not isinstance(company_id, str) or not company_id.strip():
        return "missing_company_id"
    if length_over(company_id.strip(), USAGE_COMPANY_ID_LENGTH) is not None:
        return "company_id_too_long"
    if not company_id.isascii():
        try:  # JSON may carry a lone surrogate ("\ud800"): no NVARCHAR or UTF-8 column stores it
            company_id.encode("utf-8")
        except UnicodeEncodeError:
            return "company_id_invalid_unicode"
    if raw.get("date") != requested.isoformat():
        return "wrong_date"
    counts: list[int] = []
    for name in COUNT_FIELDS:
        if name not in raw or raw[name] is None:
            return f"missing_{name}"
        value = raw[name]
        if isinstance(value, bool) or not isinstance(value, int):
            return f"non_integer_{name}"
        if value < 0:
            return f"negative_{name}"
        if value > USAGE_COUNT_MAX[name]:
            return f"{name}_out_of_range"
        counts.append(value)
    return UsageRecord(company_id.strip(), requested, counts[0], counts[1])


_RULES_IN_WORDS = {
    "not_an_object": "the record is not a JSON object",
    "invalid_json": "the line is not valid JSON",
    "missing_company_id": "company_id is missing or empty",
    "company_id_too_long": f"company_id is longer than the warehouse column (NVARCHAR({USAGE_COMPANY_ID_LENGTH}))",
    "company_id_invalid_unicode": "company_id is not valid Unicode text (a lone surrogate escape)",
    "wrong_date": "the record's date is not the day that was asked for",
    "missing_active_users": "active_users is missing",
    "missing_events": "events is missing",
    "non_integer_active_users": "active_users is not a whole number",
    "non_integer_events": "events is not a whole number",
    "negative_active_users": "active_users is negative",
    "negative_events": "events is negative",
    "active_users_out_of_range": "active_users is above the warehouse column's INT maximum "
    f"({USAGE_COUNT_MAX['active_users']:,})",
    "events_out_of_range": f"events is above the warehouse column's BIGINT maximum ({USAGE_COUNT_MAX['events']:,})",
}


def rule_in_words(reason: str) -> str:
    """What a reject code means, for alerts and reports."""
    return _RULES_IN_WORDS.get(reason, reason.replace("_", " "))


@dataclass
class ScreenResult:
    """What one day's raw records amount to."""

    activity_date: dt.date
    received: int
    accepted: list[UsageRecord]  # one per company, sorted by company_id
    rejected: int
    rejects_by_reason: dict[str, int]
    reject_samples: list[RejectedRecord]
    duplicates: int  # identical repeats collapsed
    conflicts: int  # conflicting repeats resolved by the rule above
    conflict_samples: list[Conflict] = field(default_factory=list)

    @property
    def reject_share(self) -> float:
        return self.rejected / self.received if self.received else 0.0

    def version(self) -> str:
        """sha256 of the canonical staged content: an identical re-pull gives the same version."""
        digest = hashlib.sha256(self.activity_date.isoformat().encode())
        for record in self.accepted:
            digest.update(f"\n{record.company_id}\t{record.active_users}\t{record.events}".encode())
        return digest.hexdigest()

    def describe_rejects(self, limit: int = 3) -> str:
        """The first rejected records by line and the rule each broke, in words (no values)."""
        parts = [f"line {r.line}: {rule_in_words(r.reason)}" for r in self.reject_samples[:limit]]
        more = self.rejected - len(parts)
        return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")

    def report(self) -> dict[str, Any]:
        """The rejects report (rejects.json): counts, reasons and samples. Never goes to logs."""
        return {
            "date": self.activity_date.isoformat(),
            "received": self.received,
            "accepted": len(self.accepted),
            "rejected": self.rejected,
            "rejects_by_reason": dict(sorted(self.rejects_by_reason.items())),
            "duplicates": self.duplicates,
            "conflicts": self.conflicts,
            "conflict_rule": "keep the largest (active_users, events) per company_id",
            "reject_samples": [
                {"line": r.line, "reason": r.reason, "rule": rule_in_words(r.reason), "raw": r.raw}
                for r in self.reject_samples
            ],
            "conflict_samples": [
                {"company_id": c.company_id, "kept": list(c.kept), "dropped": list(c.dropped)}
                for c in self.conflict_samples
            ],
            "samples_truncated": self.rejected > len(self.reject_samples)
            or self.conflicts > len(self.conflict_samples),
        }


class RecordScreen:
    """Feed raw records (or NDJSON lines) of one day in order; ``result()`` de-duplicates."""

    def __init__(self, requested: dt.date) -> None:
        self.requested = requested
        self._kept: dict[str, tuple[int, int]] = {}
        self._received = 0
        self._reasons: Counter[str] = Counter()
        self._samples: list[RejectedRecord] = []
        self._duplicates = 0
        self._conflicts = 0
        self._conflict_samples: list[Conflict] = []

    def feed_line(self, line: bytes | str) -> None:
        """One NDJSON line; blank lines are ignored, unparsable ones rejected."""
        text = line.decode("utf-8", errors="replace") if isinstance(line, bytes) else line
        if not text.strip():
            return
        try:
            raw = json.loads(text)
        except json.JSONDecodeError:
            self._received += 1
            self._reject("invalid_json", text)
            return
        self.feed(raw, text)

    def feed(self, raw: Any, text: str | None = None) -> None:
        self._received += 1
        checked = check_record(raw, self.requested)
        if isinstance(checked, str):
            self._reject(checked, text if text is not None else json.dumps(raw, default=str))
            return
        counts = (checked.active_users, checked.events)
        previous = self._kept.get(checked.company_id)
        if previous is None:
            self._kept[checked.company_id] = counts
        elif previous == counts:
            self._duplicates += 1
        else:
            self._conflicts += 1
            kept, dropped = (counts, previous) if counts > previous else (previous, counts)
            self._kept[checked.company_id] = kept
            if len(self._conflict_samples) < MAX_REPORTED:
                self._conflict_samples.append(Conflict(checked.company_id, kept, dropped))

    def _reject(self, reason: str, text: str) -> None:
        self._reasons[reason] += 1
        if len(self._samples) < MAX_REPORTED:
            self._samples.append(RejectedRecord(self._received, reason, text[:_MAX_RAW_CHARS]))

    def result(self) -> ScreenResult:
        accepted = [UsageRecord(cid, self.requested, au, ev) for cid, (au, ev) in sorted(self._kept.items())]
        return ScreenResult(
            activity_date=self.requested,
            received=self._received,
            accepted=accepted,
            rejected=sum(self._reasons.values()),
            rejects_by_reason=dict(self._reasons),
            reject_samples=list(self._samples),
            duplicates=self._duplicates,
            conflicts=self._conflicts,
            conflict_samples=list(self._conflict_samples),
        )
