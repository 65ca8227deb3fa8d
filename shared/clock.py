"""The one wall clock of the pipeline: aware UTC.

Services never read the clock themselves; entry points (bindings, CLI commands) call
``utc_now`` once and pass the instant down, so a run is reproducible and tests set the time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    """Now, timezone-aware in UTC."""
    return dt.datetime.now(dt.UTC)


def utc_today() -> dt.date:
    """Today's UTC date (the pipeline's days are UTC days)."""
    return utc_now().date()
