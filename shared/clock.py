"""The one wall clock of the pipeline: aware UTC.

Services never read the clock themselves; entry points (bindings, CLI commands) call
``utc_now`` once and pass the instant down, so a run is reproducible and tests set the time.

The warehouse's DATETIME2 columns and the timestamps kept in Table Storage hold UTC without an
offset; ``naive_utc`` is the one conversion to that form, called where a time is written there
or compared with one read back (a naive input is taken as UTC already, the pipeline's rule).
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


def naive_utc(moment: dt.datetime) -> dt.datetime:
    """``moment`` as UTC wall time without an offset (what DATETIME2 stores); naive is UTC already."""
    return moment.astimezone(dt.UTC).replace(tzinfo=None) if moment.tzinfo is not None else moment
