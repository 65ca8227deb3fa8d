"""Database bootstrap, a deploy step: migrations, then the app's identity as a least-privilege user.

Run by the azd post-provision hook (infra/hooks/postprovision.sh) as the SQL server's Entra
admin, or by hand with ``python -m pipeline_tools.cli schema bootstrap --app-principal NAME``.
The Functions app never applies DDL: it only checks the schema version (Resources.warehouse).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from shared.adapters.warehouse.base import Warehouse
from shared.errors import ConfigurationError
from shared.services.schema import apply_schema
from shared.settings import Settings
from shared.wiring import connect_warehouse

# QUOTENAME returns NULL beyond 128 characters (a silent no-op in EXEC), so longer names are refused.
MAX_PRINCIPAL_LENGTH = 128


# The schemas sql/admin/app_identity__grant.sql gives the app row access to.
GRANTED_SCHEMAS = ("stg", "dim", "analytics", "ops", "agg")


@dataclass(frozen=True)
class BootstrapResult:
    applied: list[str]  # migrations applied by this run (with dry_run: that it would apply)
    principal: str
    dry_run: bool = False


def check_principal_name(name: str) -> str:
    """The identity name as given, or a clear error: it becomes a SQL identifier (via QUOTENAME)."""
    if not name.strip():
        raise ConfigurationError("--app-principal: the identity name is empty")
    if len(name) > MAX_PRINCIPAL_LENGTH:
        raise ConfigurationError(f"--app-principal: longer than {MAX_PRINCIPAL_LENGTH} characters")
    if any(not ch.isprintable() for ch in name):
        raise ConfigurationError("--app-principal: contains control characters")
    return name


def apply_migrations(settings: Settings) -> list[str]:
    """The deploy step's migrations for local tools (runner, local run) before they start the app,
    which only checks the version; returns the names applied."""
    warehouse = connect_warehouse(settings)
    try:
        return apply_schema(warehouse)
    finally:
        warehouse.close()


def bootstrap(
    warehouse: Warehouse, app_principal: str, now: dt.datetime | None = None, *, dry_run: bool = False
) -> BootstrapResult:
    """Apply pending migrations, then create the app's database user and grant it row access to
    the pipeline's schemas (after the migrations: the grants name schemas they create).
    ``dry_run`` checks the same and reports the migrations it would apply; it changes nothing."""
    principal = check_principal_name(app_principal)
    if not warehouse.SUPPORTS_DATABASE_USERS:
        raise ConfigurationError(
            "schema bootstrap creates an Entra database user: it needs WAREHOUSE_ENGINE=azure_sql "
            "(the embedded engine has no users; `schema apply` is all it needs)"
        )
    applied = apply_schema(warehouse, now=now, dry_run=dry_run)
    if not dry_run:
        with warehouse.transaction():
            warehouse.run("admin/app_identity__create_user", {"app_principal": principal})
            warehouse.run("admin/app_identity__grant", {"app_principal": principal})
    return BootstrapResult(applied, principal, dry_run)
