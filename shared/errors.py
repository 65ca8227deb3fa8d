"""The pipeline's error tree.

What is retried is decided by type, never by message text. Messages never carry secrets,
connection strings or row values.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base of every error the pipeline raises on purpose."""


class ConfigurationError(PipelineError):
    """A setting is missing or malformed; the message names the setting."""


# Rejected inputs: the data is wrong, retrying will not help.
class RejectedInput(PipelineError):
    """An input was rejected; it goes to quarantine or a report, never silently dropped."""


class CrmFileRejected(RejectedInput):
    """A whole CRM file was rejected (no date, missing column, too many bad rows, ...)."""


class MalformedMessage(RejectedInput):
    """A queue message that can never be processed; rejected at once, not retried."""


class FutureDateRefused(RejectedInput):
    """A date after yesterday (UTC) was asked for: its inputs cannot exist yet, so nothing is
    built, pulled, replayed or rolled back for it (building it would invent rows)."""


# Transient errors: retry with backoff.
class TransientError(PipelineError):
    """Worth retrying: the same call may succeed later."""


class RateLimited(TransientError):
    """The upstream asked us to slow down; ``retry_after`` is seconds (already capped)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UpstreamUnavailable(TransientError):
    """5xx, timeout, connection reset, truncated body."""


class WarehouseTransientError(TransientError):
    """Deadlock, connection drop, login timeout: the warehouse may accept a retry."""


class ConcurrencyConflict(TransientError):
    """An optimistic (ETag) update lost against a concurrent writer."""


# Permanent errors: fail fast and alert.
class PermanentError(PipelineError):
    """Retrying will not help; alert and stop."""


class AuthenticationFailed(PermanentError):
    """401/403 from an upstream: credentials are wrong or lack permission."""


class SchemaOutOfDate(PermanentError):
    """The warehouse lacks migrations this code needs. Migrations are a deploy step (the CLI's
    ``schema apply``, run by the azd post-provision hook); the app only checks, it runs no DDL."""


class RetryBudgetExhausted(PermanentError):
    """A run used up its bounded retry budget."""


class TranslationError(PipelineError):
    """A T-SQL statement could not be translated to the embedded engine's dialect."""

    def __init__(self, sql_file: str, statement_index: int, reason: str) -> None:
        super().__init__(f"{sql_file}: statement {statement_index}: {reason}")
        self.sql_file = sql_file
        self.statement_index = statement_index


class BuildError(PipelineError):
    """A warehouse step failed for a reason that is not transient."""
