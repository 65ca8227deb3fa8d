"""One typed Settings object: the only place that reads the environment.

In Azure the Functions host exposes app settings (and Key Vault references, resolved by the
platform) as environment variables; locally ``func start`` does the same from
``local.settings.json``'s ``Values``. ``Settings.from_environment()`` reads exactly that, and
``Settings.from_local_settings()`` reads ``local.settings.json`` (``read_local_settings``, the
one reader of that file) for tools that run without the host. Tests build ``Settings(...)`` directly.

Every field is documented in ``local.settings.example.json`` and the README; a test keeps the
three in agreement.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from shared.errors import ConfigurationError
from shared.logs import register_secret


class WarehouseEngine(StrEnum):
    DUCKDB = "duckdb"
    AZURE_SQL = "azure_sql"


class AzureSqlAuth(StrEnum):
    SQL_PASSWORD = "sql_password"  # noqa: S105 - credentials inside AZURE_SQL_CONNECTION_STRING
    MANAGED_IDENTITY = "managed_identity"  # token from DefaultAzureCredential


class Settings(BaseModel):
    """All configuration, validated once at start-up."""

    # A plain model, not pydantic-settings: reading the environment is explicit (from_environment),
    # so tests that build Settings(...) can never pick up a developer's shell variables.
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    pipeline_name: str = Field("company-activity", validation_alias=AliasChoices("PIPELINE_NAME", "pipeline_name"))

    # --- Storage. The name "PIPELINE_STORAGE" is also the `connection=` of every binding.
    pipeline_storage: SecretStr | None = Field(
        None, validation_alias=AliasChoices("PIPELINE_STORAGE", "pipeline_storage")
    )
    pipeline_storage_account_name: str | None = Field(
        None, validation_alias=AliasChoices("PIPELINE_STORAGE__accountName", "pipeline_storage_account_name")
    )
    crm_container: str = Field("crm-snapshots", validation_alias=AliasChoices("CRM_CONTAINER", "crm_container"))
    quarantine_container: str = Field(
        "crm-quarantine", validation_alias=AliasChoices("QUARANTINE_CONTAINER", "quarantine_container")
    )
    raw_container: str = Field("usage-raw", validation_alias=AliasChoices("RAW_CONTAINER", "raw_container"))
    build_queue: str = Field("build-requests", validation_alias=AliasChoices("BUILD_QUEUE", "build_queue"))
    state_table: str = Field("pipelinestate", validation_alias=AliasChoices("STATE_TABLE", "state_table"))

    # --- CRM snapshot files.
    crm_date_pattern: str = Field(
        r"(\d{4}-\d{2}-\d{2})", validation_alias=AliasChoices("CRM_DATE_PATTERN", "crm_date_pattern")
    )
    crm_reject_threshold: float = Field(
        0.05, ge=0, le=1, validation_alias=AliasChoices("CRM_REJECT_THRESHOLD", "crm_reject_threshold")
    )
    crm_grace_hours: float = Field(6.0, ge=0, validation_alias=AliasChoices("CRM_GRACE_HOURS", "crm_grace_hours"))
    # Memory bounds for hostile files: one physical line, and the fields of one record.
    crm_max_line_bytes: int = Field(
        1024 * 1024, ge=1024, validation_alias=AliasChoices("CRM_MAX_LINE_BYTES", "crm_max_line_bytes")
    )
    crm_max_fields: int = Field(1000, ge=5, validation_alias=AliasChoices("CRM_MAX_FIELDS", "crm_max_fields"))

    # --- Product Usage API.
    usage_api_base_url: str = Field(
        "http://127.0.0.1:7072", validation_alias=AliasChoices("USAGE_API_BASE_URL", "usage_api_base_url")
    )
    usage_api_key: SecretStr = Field(
        SecretStr("local-dev-key"), validation_alias=AliasChoices("USAGE_API_KEY", "usage_api_key")
    )
    usage_api_page_size: int = Field(
        1000, ge=1, le=100_000, validation_alias=AliasChoices("USAGE_API_PAGE_SIZE", "usage_api_page_size")
    )
    usage_api_rate_limit_rps: float = Field(
        10.0, gt=0, validation_alias=AliasChoices("USAGE_API_RATE_LIMIT_RPS", "usage_api_rate_limit_rps")
    )
    usage_api_connect_timeout_s: float = Field(
        5.0, gt=0, validation_alias=AliasChoices("USAGE_API_CONNECT_TIMEOUT_S", "usage_api_connect_timeout_s")
    )
    usage_api_read_timeout_s: float = Field(
        30.0, gt=0, validation_alias=AliasChoices("USAGE_API_READ_TIMEOUT_S", "usage_api_read_timeout_s")
    )
    usage_api_max_attempts: int = Field(
        6, ge=1, validation_alias=AliasChoices("USAGE_API_MAX_ATTEMPTS", "usage_api_max_attempts")
    )
    usage_api_retry_budget: int = Field(
        50, ge=0, validation_alias=AliasChoices("USAGE_API_RETRY_BUDGET", "usage_api_retry_budget")
    )
    usage_api_retry_budget_per_page: float = Field(
        0.5,
        ge=0,
        le=10,
        validation_alias=AliasChoices("USAGE_API_RETRY_BUDGET_PER_PAGE", "usage_api_retry_budget_per_page"),
    )
    usage_api_max_page_bytes: int = Field(
        16 * 1024 * 1024,
        ge=1024,
        validation_alias=AliasChoices("USAGE_API_MAX_PAGE_BYTES", "usage_api_max_page_bytes"),
    )
    usage_api_max_retry_after_s: float = Field(
        120.0, gt=0, validation_alias=AliasChoices("USAGE_API_MAX_RETRY_AFTER_S", "usage_api_max_retry_after_s")
    )
    usage_schedule: str = Field("0 0 1 * * *", validation_alias=AliasChoices("USAGE_SCHEDULE", "usage_schedule"))
    usage_lookback_days: int = Field(
        3, ge=0, le=60, validation_alias=AliasChoices("USAGE_LOOKBACK_DAYS", "usage_lookback_days")
    )
    usage_max_catchup_days: int = Field(
        31, ge=1, le=3660, validation_alias=AliasChoices("USAGE_MAX_CATCHUP_DAYS", "usage_max_catchup_days")
    )
    usage_reject_threshold: float = Field(
        0.05, ge=0, le=1, validation_alias=AliasChoices("USAGE_REJECT_THRESHOLD", "usage_reject_threshold")
    )

    # --- Warehouse.
    warehouse_engine: WarehouseEngine = Field(
        WarehouseEngine.DUCKDB, validation_alias=AliasChoices("WAREHOUSE_ENGINE", "warehouse_engine")
    )
    duckdb_path: str = Field(".data/warehouse.duckdb", validation_alias=AliasChoices("DUCKDB_PATH", "duckdb_path"))
    # DuckDB's buffer pool cap (SET memory_limit; beyond it joins and aggregates spill to disk), and
    # what the builder sizes its range pieces by. 1.5 GB fits a 2 GB Functions instance's share.
    duckdb_memory_limit: str = Field(
        "1.5GB",
        pattern=r"^\s*\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)\s*$",
        validation_alias=AliasChoices("DUCKDB_MEMORY_LIMIT", "duckdb_memory_limit"),
    )
    azure_sql_connection_string: SecretStr | None = Field(
        None, validation_alias=AliasChoices("AZURE_SQL_CONNECTION_STRING", "azure_sql_connection_string")
    )
    azure_sql_auth: AzureSqlAuth = Field(
        AzureSqlAuth.SQL_PASSWORD, validation_alias=AliasChoices("AZURE_SQL_AUTH", "azure_sql_auth")
    )
    azure_sql_max_attempts: int = Field(
        4, ge=1, validation_alias=AliasChoices("AZURE_SQL_MAX_ATTEMPTS", "azure_sql_max_attempts")
    )
    azure_sql_batch_size: int = Field(
        5000, ge=1, validation_alias=AliasChoices("AZURE_SQL_BATCH_SIZE", "azure_sql_batch_size")
    )
    # ODBC Driver 18 ignores a login timeout in the connection string; it is set on the connection.
    azure_sql_login_timeout_s: int = Field(
        30, ge=1, le=600, validation_alias=AliasChoices("AZURE_SQL_LOGIN_TIMEOUT_S", "azure_sql_login_timeout_s")
    )

    # --- Data quality.
    quality_row_drop_threshold: float = Field(
        0.10, ge=0, le=1, validation_alias=AliasChoices("QUALITY_ROW_DROP_THRESHOLD", "quality_row_drop_threshold")
    )
    quality_unknown_company_share_warn: float = Field(
        0.05,
        ge=0,
        le=1,
        validation_alias=AliasChoices("QUALITY_UNKNOWN_COMPANY_SHARE_WARN", "quality_unknown_company_share_warn"),
    )
    quality_api_total_tolerance: float = Field(
        0.0, ge=0, le=1, validation_alias=AliasChoices("QUALITY_API_TOTAL_TOLERANCE", "quality_api_total_tolerance")
    )
    freshness_deadline_hours: float = Field(
        30.0, gt=0, validation_alias=AliasChoices("FRESHNESS_DEADLINE_HOURS", "freshness_deadline_hours")
    )
    freshness_lookback_days: int = Field(
        7, ge=1, le=60, validation_alias=AliasChoices("FRESHNESS_LOOKBACK_DAYS", "freshness_lookback_days")
    )
    events_lookback_minutes: int = Field(
        60, ge=0, validation_alias=AliasChoices("EVENTS_LOOKBACK_MINUTES", "events_lookback_minutes")
    )
    events_reconciliation_tolerance: float = Field(
        0.01,
        ge=0,
        validation_alias=AliasChoices("EVENTS_RECONCILIATION_TOLERANCE", "events_reconciliation_tolerance"),
    )

    # --- Alerts.
    alert_webhook_url: SecretStr | None = Field(
        None, validation_alias=AliasChoices("ALERT_WEBHOOK_URL", "alert_webhook_url")
    )
    alert_dedup_minutes: int = Field(
        60, ge=0, validation_alias=AliasChoices("ALERT_DEDUP_MINUTES", "alert_dedup_minutes")
    )
    alert_timeout_s: float = Field(5.0, gt=0, validation_alias=AliasChoices("ALERT_TIMEOUT_S", "alert_timeout_s"))
    alert_retry_max_attempts: int = Field(
        5, ge=1, validation_alias=AliasChoices("ALERT_RETRY_MAX_ATTEMPTS", "alert_retry_max_attempts")
    )  # a failed delivery is tried again on each timer tick until tried this many times
    run_link_template: str = Field(
        "", validation_alias=AliasChoices("RUN_LINK_TEMPLATE", "run_link_template")
    )  # e.g. a Log Analytics query URL with {run_id}; empty: alerts name the ops table instead

    # --- Recovery.
    run_lease_minutes: int = Field(
        30, ge=1, validation_alias=AliasChoices("RUN_LEASE_MINUTES", "run_lease_minutes")
    )  # a running step without a heartbeat for this long is marked abandoned

    log_level: str = Field("INFO", validation_alias=AliasChoices("LOG_LEVEL", "log_level"))

    # --- Telemetry (OpenTelemetry; shared/telemetry.py).
    applicationinsights_connection_string: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("APPLICATIONINSIGHTS_CONNECTION_STRING", "applicationinsights_connection_string"),
    )
    # "Authorization=AAD" (plus ";ClientId=<id>" for a user-assigned identity): the exporter sends with
    # the managed identity, as Application Insights with local authentication off requires (infra/).
    applicationinsights_authentication_string: str = Field(
        "",
        validation_alias=AliasChoices(
            "APPLICATIONINSIGHTS_AUTHENTICATION_STRING", "applicationinsights_authentication_string"
        ),
    )
    telemetry_sampling_ratio: float = Field(
        1.0, ge=0, le=1, validation_alias=AliasChoices("TELEMETRY_SAMPLING_RATIO", "telemetry_sampling_ratio")
    )
    telemetry_console: bool = Field(False, validation_alias=AliasChoices("TELEMETRY_CONSOLE", "telemetry_console"))

    @model_validator(mode="before")
    @classmethod
    def _empty_means_default(cls, values: Any) -> Any:
        """An empty app setting means "not set" (Azure shows unset settings as empty)."""
        if isinstance(values, dict):
            return {k: v for k, v in values.items() if not (isinstance(v, str) and v.strip() == "")}
        return values

    @field_validator("crm_date_pattern")
    @classmethod
    def _pattern_has_one_group(cls, value: str) -> str:
        import re

        try:
            compiled = re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from exc
        if compiled.groups != 1:
            raise ValueError("must have exactly one capture group around the YYYY-MM-DD date")
        return value

    @field_validator("usage_schedule")
    @classmethod
    def _six_field_ncrontab(cls, value: str) -> str:
        from croniter import croniter

        if value.startswith("%"):
            return value
        if len(value.split()) != 6 or not croniter.is_valid(value, second_at_beginning=True):
            raise ValueError("must be a six-field NCRONTAB expression, seconds first, e.g. '0 0 1 * * *'")
        return value

    def model_post_init(self, __context: Any) -> None:
        for secret in (
            self.pipeline_storage,
            self.usage_api_key,
            self.azure_sql_connection_string,
            self.alert_webhook_url,
            self.applicationinsights_connection_string,
        ):
            if secret is not None:
                register_secret(secret.get_secret_value())
        # A password or account key can surface without the rest of its connection string
        # (a driver echoing it, an ODBC {quoted;value} the redaction pattern cuts short).
        for connection in (self.pipeline_storage, self.azure_sql_connection_string):
            if connection is not None:
                for credential in connection_string_credentials(connection.get_secret_value()):
                    register_secret(credential)

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> Settings:
        """Build from a mapping of setting names (as in local.settings.json); clear errors."""
        refuse_retired(values)
        try:
            return cls.model_validate(dict(values))
        except ValidationError as exc:
            raise ConfigurationError(_describe(exc)) from None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """What the Functions host gives us: app settings as environment variables."""
        return cls.from_values(_app_settings(os.environ if environ is None else environ))

    @classmethod
    def from_local_settings(cls, path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
        """local.settings.json Values, overridden by the environment (as Core Tools does); see
        ``read_local_settings`` for which file is read."""
        values: dict[str, Any] = read_local_settings(path)
        values.update(_app_settings(os.environ if environ is None else environ))
        return cls.from_values(values)

    # ---- derived ------------------------------------------------------------------------
    def storage_connection_string(self) -> str | None:
        return self.pipeline_storage.get_secret_value() if self.pipeline_storage else None

    def require_storage(self) -> None:
        if not self.pipeline_storage and not self.pipeline_storage_account_name:
            raise ConfigurationError(
                "PIPELINE_STORAGE (connection string) or PIPELINE_STORAGE__accountName (managed identity) must be set"
            )


DEFAULT_LOCAL_SETTINGS = Path("local.settings.json")


def read_local_settings(path: str | Path | None = None) -> dict[str, str]:
    """The ``Values`` of a local.settings.json, as strings (``null`` as empty): the one reader.

    ``path`` given (a ``--settings`` on a command line): the file must exist, or the tool would
    quietly run against defaults (a fresh warehouse). ``None``: ./local.settings.json when it
    exists, else no values, so the environment alone configures the run, as in Azure.
    An unreadable, non-JSON or encrypted file is a ConfigurationError either way.
    """
    file = DEFAULT_LOCAL_SETTINGS if path is None else Path(path)
    if path is None and not file.is_file():
        return {}
    try:
        document = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigurationError(f"{file}: not found (copy local.settings.example.json)") from None
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"{file}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except OSError as exc:
        raise ConfigurationError(f"{file}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    if not isinstance(document, dict):
        raise ConfigurationError(f"{file}: not a local.settings.json (no top-level object)")
    if document.get("IsEncrypted"):
        raise ConfigurationError(f"{file}: IsEncrypted is true; only plain values can be read")
    return {str(k): "" if v is None else str(v) for k, v in document.get("Values", {}).items()}


_CREDENTIAL_KEYS = {"password", "pwd", "accountkey", "sharedaccesssignature"}
# key=value pairs of a connection string; ODBC values may be {braced}, with "}}" for "}".
_CONNECTION_PAIR = re.compile(r"(?:^|;)\s*([^=;]+?)\s*=\s*(\{(?:[^}]|\}\})*\}|[^;]*)")


def connection_string_credentials(connection_string: str) -> list[str]:
    """The credential values inside a connection string, as written and unquoted."""
    found = []
    for match in _CONNECTION_PAIR.finditer(connection_string):
        if match.group(1).replace(" ", "").lower() in _CREDENTIAL_KEYS:
            value = match.group(2)
            found.append(value)
            if value.startswith("{") and value.endswith("}"):
                found.append(value[1:-1].replace("}}", "}"))
    return found


# Settings that were replaced, with what replaced them. Unknown names are otherwise ignored (the
# host sets many of its own), so a retired one would silently fall back to its successor's default.
RETIRED_SETTINGS = {
    "EVENTS_LOOKBACK_DAYS": "EVENTS_LOOKBACK_MINUTES (the look-back is load time since issue 17's third round)",
}


def refuse_retired(names: Mapping[str, Any]) -> None:
    """A ConfigurationError naming each retired setting that is still set, and its replacement."""
    retired = sorted(name for name in names if name.upper() in RETIRED_SETTINGS)
    if retired:
        replacements = "; ".join(f"{name} is replaced by {RETIRED_SETTINGS[name.upper()]}" for name in retired)
        raise ConfigurationError(f"retired setting(s) still set: {replacements}; remove them")


def _app_settings(environ: Mapping[str, str]) -> dict[str, str]:
    """This app's settings among the environment's variables (the host sets many of its own),
    which are otherwise ignored; a retired setting among them is refused like one in a file."""
    refuse_retired(environ)
    known = _known_names()
    return {name: value for name, value in environ.items() if name.lower() in known}


def setting_names() -> list[str]:
    """The external names of every setting, as documented in local.settings.example.json."""
    names = []
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.append(str(alias.choices[0]))
    return names


def _known_names() -> set[str]:
    names = {n.lower() for n in setting_names()}
    return names


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        name = str(err["loc"][0]) if err["loc"] else "?"
        field = Settings.model_fields.get(name)
        if field is not None and isinstance(field.validation_alias, AliasChoices):
            name = str(field.validation_alias.choices[0])
        parts.append(f"setting {name}: {err['msg']}")
    return "; ".join(parts)
