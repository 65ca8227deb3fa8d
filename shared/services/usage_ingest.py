"""Product-usage ingestion (timer trigger). Implemented by the usage issue."""

from __future__ import annotations

import datetime as dt
from typing import Any


def run_usage_tick(now: dt.datetime, past_due: bool, services: Any) -> Any:
    raise NotImplementedError("usage ingestion is not implemented yet")
