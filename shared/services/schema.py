"""Warehouse schema migrations (``schema apply``, the azd post-provision hook): a deploy step.

At runtime the app only checks the schema version (``shared.wiring``), so its identity needs no
DDL rights.
"""

from __future__ import annotations

import datetime as dt

from shared.adapters.warehouse.base import Warehouse
from shared.adapters.warehouse.sql_files import migrations


def apply_schema(warehouse: Warehouse, now: dt.datetime | None = None, *, dry_run: bool = False) -> list[str]:
    """Apply pending migrations; returns the names of those applied (empty: already current).
    ``dry_run`` returns the names it would apply and applies nothing."""
    if dry_run:
        return [name for _, name in warehouse.pending_migrations()]
    names = dict(migrations(warehouse.sql_root))
    return [names[version] for version in warehouse.apply_schema(now=now)]
