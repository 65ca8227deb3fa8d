"""What the blob, queue and table adapters share: how to reach the account, how errors map.

Two ways to reach the account, as the Functions host does for ``connection="PIPELINE_STORAGE"``:
a connection string in ``PIPELINE_STORAGE`` (Azurite, or a key/SAS), or managed identity when
only ``PIPELINE_STORAGE__accountName`` is set (``DefaultAzureCredential`` against
``https://<account>.<service>.core.windows.net``).

Azure SDK exceptions are mapped onto ``shared.errors`` so callers retry by type. Messages name
the operation, HTTP status and storage error code, never the SDK's text (which can echo URLs
carrying a SAS token).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any, Literal

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from shared.errors import (
    AuthenticationFailed,
    ConcurrencyConflict,
    PermanentError,
    RateLimited,
    UpstreamUnavailable,
)
from shared.settings import Settings

Service = Literal["blob", "queue", "table"]

# The storage SDKs' default backoff starts at 15 s and the tables SDK retries 10 times; a function
# invocation is better served by a few quick retries, after which the host's own retry (blob and
# queue triggers) or the next timer tick takes over.
BLOB_QUEUE_RETRY: dict[str, Any] = {"retry_total": 3, "initial_backoff": 1, "increment_base": 2}
TABLE_RETRY: dict[str, Any] = {"retry_total": 3, "retry_backoff_factor": 0.5, "retry_backoff_max": 10}

_DEVELOPMENT_STORAGE = "usedevelopmentstorage=true"
# Where the account and its credentials come from: named in every connection error, so an
# operator knows what to fix (the value itself never appears).
SETTING = "PIPELINE_STORAGE (or PIPELINE_STORAGE__accountName)"


class StorageNotFound(PermanentError):
    """The container, queue, table, blob or entity does not exist (where absence is an error)."""


class StorageRequestFailed(PermanentError):
    """The service rejected the request (4xx other than auth, not-found and conflicts)."""


def connection_string(settings: Settings) -> str | None:
    """PIPELINE_STORAGE, normalised so every SDK accepts the Azurite shorthand."""
    value = settings.storage_connection_string()
    if value is None:
        return None
    # The tables SDK only recognises the shorthand spelled exactly, without a trailing ';'.
    if value.strip().rstrip(";").lower() == _DEVELOPMENT_STORAGE:
        return "UseDevelopmentStorage=true"
    return value


def identity_endpoint(settings: Settings, service: Service) -> tuple[str, Any]:
    """(account URL, credential) for managed identity, used when no connection string is set."""
    settings.require_storage()
    account = settings.pipeline_storage_account_name
    return f"https://{account}.{service}.core.windows.net", default_credential()


@functools.cache
def default_credential() -> Any:
    """One DefaultAzureCredential per process: its token cache is then shared by all clients."""
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


@contextlib.contextmanager
def storage_errors(operation: str) -> Iterator[None]:
    """Re-raise Azure SDK errors as the pipeline's error types (retry is decided by type)."""
    try:
        yield
    except ClientAuthenticationError as exc:  # 401/403, and identity failures (credential unavailable)
        raise AuthenticationFailed(
            f"{operation}: storage refused the credentials of setting {SETTING} ({_status(exc)})"
        ) from exc
    except ResourceModifiedError as exc:  # 412: an ETag / If-Match precondition failed
        raise ConcurrencyConflict(f"{operation}: modified concurrently ({_status(exc)})") from exc
    except ResourceExistsError as exc:  # 409
        raise ConcurrencyConflict(f"{operation}: conflicts with the current state ({_status(exc)})") from exc
    except ResourceNotFoundError as exc:
        raise StorageNotFound(f"{operation}: not found ({_status(exc)})") from exc
    except (ServiceRequestError, ServiceResponseError) as exc:  # connection refused/reset, timeouts
        raise UpstreamUnavailable(
            f"{operation}: storage unreachable at the account of setting {SETTING} ({type(exc).__name__})"
        ) from exc
    except HttpResponseError as exc:
        status = exc.status_code or 0
        if status in (401, 403):  # a wrong key signs requests the service refuses as 403
            raise AuthenticationFailed(
                f"{operation}: storage refused the credentials of setting {SETTING} ({_status(exc)})"
            ) from exc
        if status == 429:
            raise RateLimited(f"{operation}: throttled ({_status(exc)})", retry_after=_retry_after(exc)) from exc
        if status == 408 or status >= 500:
            raise UpstreamUnavailable(f"{operation}: storage unavailable ({_status(exc)})") from exc
        raise StorageRequestFailed(f"{operation}: rejected ({_status(exc)})") from exc


def _status(exc: HttpResponseError) -> str:
    code = getattr(exc, "error_code", None)
    return f"HTTP {exc.status_code}" + (f" {code}" if code else "")


def _retry_after(exc: HttpResponseError) -> float | None:
    response = getattr(exc, "response", None)
    value = response.headers.get("Retry-After") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
