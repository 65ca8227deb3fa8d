"""Product Usage API client, built from small parts that are each tested alone (the dlt
``rest_client`` shape): a cursor paginator, bearer auth, a token-bucket rate limiter, a
``Retry-After`` parser, a retry policy made of tenacity predicates, and a per-run retry budget.

``UsageApiClient`` composes them. It holds one ``requests.Session`` per process (the Functions
"manage connections" guidance) and one rate limiter (the API's limit is per key, not per run);
``for_run()`` gives a view with a fresh retry budget for each timer tick.

``UsageSource`` is the interface services take: the API (``UsageApiClient``) or a replay of
raw blobs (``shared.services.usage_ingest.RawReplaySource``) can stand in for each other.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import logging
import math
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.auth import AuthBase
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter
from tenacity.wait import wait_base

from shared import telemetry
from shared.clock import Clock, naive_utc, utc_now
from shared.errors import (
    AuthenticationFailed,
    PermanentError,
    RateLimited,
    RetryBudgetExhausted,
    TransientError,
    UpstreamUnavailable,
)
from shared.logs import redact
from shared.settings import Settings

log = logging.getLogger(__name__)

DAILY_PATH = "/v1/usage/daily"
_SPOOL_BYTES = 8 * 1024 * 1024  # raw pages stay in memory up to this, then spill to a temp file
_CHUNK_BYTES = 1024 * 1024


# ---- the interface services take -------------------------------------------------------------
@dataclass
class DayPull:
    """One day's raw records as NDJSON bytes (records exactly as received, one per line)."""

    activity_date: dt.date
    fetched_at: dt.datetime  # UTC, naive
    pages: int
    records: int  # lines in the NDJSON: every record received, invalid and repeated ones included
    request_ids: list[str]
    chunks: Callable[[], Iterator[bytes]]  # re-readable stream of the NDJSON
    from_raw: bool = False  # True when replayed from the raw landing (nothing to land again)
    _spool: IO[bytes] | None = field(default=None, repr=False)

    def close(self) -> None:
        if self._spool is not None:
            self._spool.close()


class UsageSource(Protocol):
    def fetch_day(self, day: dt.date) -> DayPull: ...


# ---- parts -----------------------------------------------------------------------------------
class BearerAuth(AuthBase):
    """``Authorization: Bearer <key>``; the key stays a SecretStr until the header is set."""

    def __init__(self, key: Any) -> None:  # pydantic SecretStr
        self._key = key

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._key.get_secret_value()}"
        return request

    def __repr__(self) -> str:
        return "BearerAuth(***)"


class CursorPaginator:
    """``next_cursor`` in the body, ``cursor=`` in the next request; stops on null.

    A cursor the API already returned means it is looping: that is an upstream defect, not
    something to follow forever.
    """

    def __init__(self, cursor_field: str = "next_cursor", cursor_param: str = "cursor") -> None:
        self.cursor_field = cursor_field
        self.cursor_param = cursor_param
        self.cursor: str | None = None
        self.has_next = True
        self._seen: set[str] = set()

    def init_request(self, params: dict[str, Any]) -> None:
        params.pop(self.cursor_param, None)

    def update_state(self, body: dict[str, Any]) -> None:
        cursor = body.get(self.cursor_field)
        if cursor in (None, ""):
            self.has_next = False
            return
        if not isinstance(cursor, str):
            raise UpstreamUnavailable(f"{self.cursor_field} is not a string")
        if cursor in self._seen:
            raise PermanentError("the usage API returned a cursor it had already returned (pagination loop)")
        self._seen.add(cursor)
        self.cursor = cursor

    def update_request(self, params: dict[str, Any]) -> None:
        params[self.cursor_param] = self.cursor


class TokenBucketLimiter:
    """Client-side rate limit: at most ``rate`` requests/second, bursts of ``capacity``.

    ``acquire()`` sleeps until a token is free. Clock and sleep are injectable so tests don't
    wait; the lock makes it safe for a process shared by concurrent invocations.
    """

    def __init__(
        self,
        rate: float,
        capacity: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0 or capacity < 1:
            raise ValueError("rate must be > 0 and capacity >= 1")
        self.rate = rate
        self.capacity = capacity
        self._clock = clock
        self._sleep = sleep
        self._tokens = capacity
        self._updated = clock()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token, sleeping as needed; returns the seconds slept."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            wait = 0.0 if self._tokens >= 1 else (1 - self._tokens) / self.rate
            # Reserve the token now (tokens may go negative) so waiters queue up in order.
            self._tokens -= 1
        if wait > 0:
            self._sleep(wait)
        return wait


def parse_retry_after(value: str | None, now: dt.datetime, cap: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP-date, capped.

    None when absent or unreadable (the backoff then decides). A date in the past means 0.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        seconds = (when - now).total_seconds()
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), cap)


class RetryBudget:
    """The retries one run may spend across all its requests: ``base`` plus ``per_page`` for
    every page received, so the budget scales with the work (a 3,000-page catch-up on a flaky
    API completes) while an outage, where no page arrives, still stops after ``base`` retries.
    Each request stays capped by USAGE_API_MAX_ATTEMPTS."""

    def __init__(self, base: int, per_page: float = 0.0) -> None:
        self.base = base
        self.per_page = per_page
        self.pages = 0
        self.used = 0
        self._lock = threading.Lock()

    @property
    def total(self) -> int:
        return self.base + int(self.per_page * self.pages)

    def earn(self) -> None:
        """A page arrived: the run's allowance grows by ``per_page``."""
        with self._lock:
            self.pages += 1

    def spend(self) -> None:
        with self._lock:
            if self.used >= self.total:
                raise RetryBudgetExhausted(
                    f"the run used its retry budget of {self.total} retries "
                    f"({self.base} + {self.per_page:g} per page x {self.pages} pages)"
                )
            self.used += 1


def is_transient(exc: BaseException) -> bool:
    """Retry predicate: 5xx, timeouts, connection errors, bad bodies and 429 are transient;
    auth failures and an exhausted budget are not (they are PermanentError)."""
    return isinstance(exc, TransientError)


class wait_retry_after_or_backoff(wait_base):
    """Honour a 429's Retry-After when it has one. A request's first ``immediate`` failures of
    any other kind (5xx, timeout, bad body) are retried at once, which means at the rate
    limiter's next token: a backoff there would spend seconds of the rate budget on a hiccup
    (at 20 req/s, ~15 requests per 0.75 s wait; measured with 5 % random 503s, the backoffs
    after two failures in a row cost more than the 429s). Past that, exponential backoff with
    jitter, as an outage needs."""

    def __init__(self, backoff: wait_base, immediate: int = 2) -> None:
        self.backoff = backoff
        self.immediate = immediate

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        if isinstance(exc, RateLimited):
            if exc.retry_after is not None:
                return exc.retry_after
        elif retry_state.attempt_number <= self.immediate:
            return 0.0
        return float(self.backoff(retry_state))


def redact_url(url: str) -> str:
    """URL safe for logs: no user-info, and credential-looking query values masked."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    return redact(urlunsplit((parts.scheme, netloc, parts.path, parts.query, "")))


def classify_response(response: requests.Response, now: dt.datetime, max_retry_after: float) -> None:
    """Raise the error type the status means; return for 2xx."""
    status = response.status_code
    if status in (401, 403):
        raise AuthenticationFailed(f"usage API refused the credentials (HTTP {status}); check USAGE_API_KEY")
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("Retry-After"), now, max_retry_after)
        raise RateLimited("usage API rate limit (HTTP 429)", retry_after=retry_after)
    if status >= 500:
        raise UpstreamUnavailable(f"usage API unavailable (HTTP {status})")
    if status >= 400:
        raise PermanentError(f"usage API rejected the request (HTTP {status})")


def read_body(response: requests.Response, max_bytes: int) -> bytes:
    """The (decoded) body, refusing more than ``max_bytes``: a hostile or broken page can neither
    exhaust memory nor, gzip-encoded, unpack into it. Not retried: the same page would be as big."""
    body = bytearray()
    for chunk in response.iter_content(64 * 1024):
        body += chunk
        if len(body) > max_bytes:
            response.close()
            raise PermanentError(
                f"usage API page is larger than {max_bytes} bytes (USAGE_API_MAX_PAGE_BYTES); not loaded"
            )
    return bytes(body)


def parse_page(response: requests.Response, max_bytes: int = 16 * 1024 * 1024) -> dict[str, Any]:
    """The JSON body as a dict with a ``data`` list; a truncated or odd body is transient."""
    try:
        body = json.loads(read_body(response, max_bytes))
    except (ValueError, UnicodeDecodeError) as exc:
        raise UpstreamUnavailable("usage API returned a truncated or invalid JSON body") from exc
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise UpstreamUnavailable("usage API body has no 'data' list")
    return body


def run_budget(settings: Settings) -> RetryBudget:
    return RetryBudget(settings.usage_api_retry_budget, settings.usage_api_retry_budget_per_page)


# ---- the client ------------------------------------------------------------------------------
class UsageApiClient:
    """Pulls one day at a time: every page, with rate limiting and retries, into a spooled NDJSON."""

    def __init__(
        self,
        settings: Settings,
        *,
        session: requests.Session | None = None,
        limiter: TokenBucketLimiter | None = None,
        budget: RetryBudget | None = None,
        sleep: Callable[[float], None] = time.sleep,
        wall_clock: Clock = utc_now,
    ) -> None:
        self.settings = settings
        self.base_url = settings.usage_api_base_url.rstrip("/")
        self.session = session or requests.Session()
        self.session.auth = BearerAuth(settings.usage_api_key)
        self.limiter = limiter or TokenBucketLimiter(settings.usage_api_rate_limit_rps, sleep=sleep)
        self.budget = budget or run_budget(settings)
        self.timeout = (settings.usage_api_connect_timeout_s, settings.usage_api_read_timeout_s)
        self._sleep = sleep
        self._wall_clock = wall_clock

    @classmethod
    def from_settings(cls, settings: Settings) -> UsageApiClient:
        return cls(settings)

    def for_run(self) -> UsageApiClient:
        """The same session and rate limiter with a fresh retry budget: one per run."""
        return UsageApiClient(
            self.settings,
            session=self.session,
            limiter=self.limiter,
            budget=run_budget(self.settings),
            sleep=self._sleep,
            wall_clock=self._wall_clock,
        )

    # ---- requests ----------------------------------------------------------------------------
    def _retrying(self) -> Retrying:
        return Retrying(
            retry=retry_if_exception(is_transient),
            stop=stop_after_attempt(self.settings.usage_api_max_attempts),
            wait=wait_retry_after_or_backoff(wait_exponential_jitter(multiplier=0.5, max=30.0, jitter=0.5)),
            sleep=self._sleep,
            before_sleep=self._before_retry,
            reraise=True,
        )

    def _before_retry(self, retry_state: RetryCallState) -> None:
        # Spending happens before the wait, so an exhausted budget fails at once, not after a sleep.
        self.budget.spend()
        telemetry.API_RETRIES.add(1)
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        log.warning(
            "usage API attempt %d failed (%s: %s); retrying in %.2fs",
            retry_state.attempt_number,
            type(exc).__name__,
            redact(str(exc)),
            retry_state.upcoming_sleep,
        )

    def get_page(self, params: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        """One page (retried as the policy says): the body and the server's request id.

        One ``usage_api.page`` span; each HTTP attempt is a client span inside it (requests
        instrumentation)."""
        with telemetry.span("usage_api.page", attributes={"usage_api.date": params.get("date")}) as span:
            for attempt in self._retrying():
                with attempt:
                    body, request_id = self._get_once(params)
                    self.budget.earn()
                    span.set_attributes(
                        {
                            "usage_api.records": len(body["data"]),
                            "usage_api.attempts": attempt.retry_state.attempt_number,
                        }
                    )
                    return body, request_id
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    def _get_once(self, params: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        self.limiter.acquire()
        url = f"{self.base_url}{DAILY_PATH}"
        telemetry.API_REQUESTS.add(1)
        try:
            response = self.session.get(url, params=params, timeout=self.timeout, stream=True)
        except requests.Timeout as exc:
            raise UpstreamUnavailable(f"usage API timed out ({type(exc).__name__})") from exc
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            raise UpstreamUnavailable(f"usage API connection failed ({type(exc).__name__})") from exc
        if response.status_code == 429:
            telemetry.API_RATE_LIMITED.add(1)
        log.debug("GET %s -> %s", redact_url(response.url), response.status_code)
        try:
            classify_response(response, self._wall_clock(), self.settings.usage_api_max_retry_after_s)
            return parse_page(response, self.settings.usage_api_max_page_bytes), response.headers.get("X-Request-Id")
        finally:
            response.close()  # streamed: give the connection back whatever happened

    # ---- a day -------------------------------------------------------------------------------
    def iter_pages(self, day: dt.date) -> Iterator[tuple[dict[str, Any], str | None]]:
        """Every page of ``day``, following the cursor."""
        paginator = CursorPaginator()
        params: dict[str, Any] = {"date": day.isoformat(), "limit": self.settings.usage_api_page_size}
        paginator.init_request(params)
        while paginator.has_next:
            body, request_id = self.get_page(params)
            paginator.update_state(body)
            paginator.update_request(params)
            yield body, request_id

    def fetch_day(self, day: dt.date) -> DayPull:
        """All pages of ``day`` into a spooled NDJSON (memory bounded); nothing partial escapes:
        an error raises and the spool is discarded."""
        spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES)  # noqa: SIM115 - owned by DayPull
        pages = records = 0
        request_ids: list[str] = []
        # Double buffering: one thread writes page N to the spool while the next request is out.
        # A cursor pull is sequential, so each page's client-side work adds to the time between
        # requests; overlapped with the wait for the next page, it no longer does (the GIL is
        # free while the socket waits). At most one page waits to be written.
        writing: Future[None] | None = None
        try:
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="usage-spool") as writer:
                for body, request_id in self.iter_pages(day):
                    pages += 1
                    if request_id:
                        request_ids.append(request_id)
                    records += len(body["data"])
                    if writing is not None:
                        writing.result()
                    writing = writer.submit(_write_ndjson, spool, body["data"])
                if writing is not None:
                    writing.result()
        except BaseException:
            spool.close()
            raise
        log.info("pulled %d records in %d pages for %s", records, pages, day.isoformat())
        return DayPull(
            activity_date=day,
            fetched_at=naive_utc(self._wall_clock()),
            pages=pages,
            records=records,
            request_ids=request_ids,
            chunks=lambda: _read_chunks(spool),
            _spool=spool,
        )


_NDJSON = json.JSONEncoder(separators=(",", ":"), sort_keys=True)  # one encoder, not one per record


def _write_ndjson(spool: IO[bytes], records: list[Any]) -> None:
    """Records as NDJSON lines, each exactly as received (keys sorted)."""
    if records:
        spool.write(("\n".join(map(_NDJSON.encode, records)) + "\n").encode())


def _read_chunks(handle: IO[bytes]) -> Iterator[bytes]:
    handle.seek(0)
    while chunk := handle.read(_CHUNK_BYTES):
        yield chunk
