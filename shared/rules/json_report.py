"""Report values in the shape ``--json`` prints: pure, no I/O."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any


def iso(value: Any) -> Any:
    """A date or datetime as ISO-8601; anything else unchanged."""
    return value.isoformat() if isinstance(value, dt.date | dt.datetime) else value


def json_safe(value: Any) -> Any:
    """Dates and datetimes as ISO-8601 strings; everything else as JSON already knows it."""
    return json.loads(json.dumps(value, default=_iso_or_str))


def _iso_or_str(value: Any) -> str:
    found = iso(value)
    return found if isinstance(found, str) else str(value)
