"""A mock of the Product Usage API (SPEC section 2) for the local run, the tests and the benchmark.

``GET /v1/usage/daily?date=YYYY-MM-DD&limit=N&cursor=C`` with ``Authorization: Bearer <key>``
answers ``{"date", "data": [...], "next_cursor"}`` from a deterministic synthetic dataset
(``UsageDataset``: importable, so other code can compute the expected numbers). It enforces a
server-side rate limit (429 + ``Retry-After``) and has switchable faults that tests toggle while
it runs: 5xx bursts, a seeded random share of 5xx and 429 answers, slow responses, truncated
JSON, duplicate records across pages, schema drift, 401/403. Every request is logged (path,
query, status, server-clock time) for assertions.

Binds 127.0.0.1 only. Run it alone with
``python -m pipeline_tools.mock_usage_api --port 7072 --companies 1000 --start 2025-01-01 --end 2025-12-31``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import datetime as dt
import email.utils
import hmac
import json
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

DEFAULT_KEY = "local-dev-key"
MAX_PAGE_SIZE = 10_000
_MASK = (1 << 64) - 1


_MIX_START = 0x9E3779B97F4A7C15


def _mix_step(state: int, value: int) -> int:
    """One splitmix64 step: ``state`` absorbs ``value``."""
    state = (state ^ (value & _MASK)) & _MASK
    state = (state + 0x9E3779B97F4A7C15) & _MASK
    z = ((state ^ (state >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def _mix(*values: int) -> int:
    """A deterministic 64-bit hash of integers (splitmix64 steps): fast, seedable, no RNG state.

    The values are absorbed left to right, so hashes sharing leading values can share the steps
    that absorb them (``UsageDataset.scan`` does, for speed)."""
    state = _MIX_START
    for value in values:
        state = _mix_step(state, value)
    return state


def company_id(n: int) -> str:
    """Company ids shared with the sample CRM files: C000001 .. C{N:06d}."""
    return f"C{n:06d}"


class UsageDataset:
    """Deterministic usage for companies 1..N over [start, end] (no data outside the range).

    Per (company, day): about 3 % of company-days are missing (no record at all); companies go
    inactive for 14-day stretches about 10 % of the time (records with 0 / 0); otherwise the
    numbers depend on a stable company size. ``correct(day)`` bumps a day's version, which
    changes about 10 % of that day's records: what a late correction by the real API looks like.
    """

    MISSING_PERCENT = 3
    INACTIVE_PERCENT = 10
    STRETCH_DAYS = 14
    CORRECTED_PERCENT = 10

    def __init__(self, companies: int, seed: int = 7, start: dt.date | None = None, end: dt.date | None = None) -> None:
        self.companies = companies
        self.seed = seed
        self.start = start
        self.end = end
        self._versions: dict[dt.date, int] = {}
        self._lock = threading.Lock()

    def version(self, day: dt.date) -> int:
        with self._lock:
            return self._versions.get(day, 0)

    def correct(self, day: dt.date) -> int:
        """Change ``day``'s numbers (a late correction); returns the new version."""
        with self._lock:
            self._versions[day] = self._versions.get(day, 0) + 1
            return self._versions[day]

    def in_range(self, day: dt.date) -> bool:
        return (self.start is None or day >= self.start) and (self.end is None or day <= self.end)

    def record(self, n: int, day: dt.date, version: int = 0) -> dict[str, Any] | None:
        """Company ``n``'s record for ``day``, or None when the API has none for it."""
        return self._record(_mix_step(_mix_step(_MIX_START, self.seed), n), n, day.toordinal(), day, version)

    def _record(self, company: int, n: int, ordinal: int, day: dt.date, version: int) -> dict[str, Any] | None:
        """``record`` from ``company``, the hash state after (seed, n): every hash of a record
        starts with those two values, so a page computes that state once per company, not per hash.
        The same numbers as ``_mix(self.seed, n, ...)``."""
        on_day = _mix_step(company, ordinal)
        if _mix_step(on_day, 1) % 100 < self.MISSING_PERCENT:
            return None
        if _mix_step(_mix_step(company, ordinal // self.STRETCH_DAYS), 2) % 100 < self.INACTIVE_PERCENT:
            active_users, events = 0, 0
        else:
            size = 1 + _mix_step(company, 3) % 50
            active_users = _mix_step(on_day, 4) % (size + 1)
            events = active_users * (1 + _mix_step(on_day, 5) % 20)
        for v in range(1, version + 1):
            corrected = _mix_step(on_day, v)
            if _mix_step(corrected, 6) % 100 < self.CORRECTED_PERCENT:
                active_users += 1
                events += 1 + _mix_step(corrected, 7) % 10
        return {"company_id": company_id(n), "date": day.isoformat(), "active_users": active_users, "events": events}

    def scan(self, day: dt.date, start_index: int, limit: int, version: int | None = None) -> tuple[list[dict], int]:
        """Up to ``limit`` records from company index ``start_index`` (0-based); returns the
        records and the index to continue from (``companies`` when done)."""
        if not self.in_range(day):
            return [], self.companies
        version = self.version(day) if version is None else version
        found: list[dict] = []
        index = start_index
        seeded, ordinal = _mix_step(_MIX_START, self.seed), day.toordinal()
        while index < self.companies and len(found) < limit:
            record = self._record(_mix_step(seeded, index + 1), index + 1, ordinal, day, version)
            if record is not None:
                found.append(record)
            index += 1
        return found, index

    def records(self, day: dt.date, version: int | None = None) -> list[dict[str, Any]]:
        """Every record of ``day``, sorted by company_id: the expected staged rows."""
        records, _ = self.scan(day, 0, self.companies, version)
        return records


# ---- faults and rate limiting ---------------------------------------------------------------
@dataclass
class _Fault:
    kind: str  # "status" | "slow" | "truncate" | "rate_limit"
    first: int  # first request sequence number it applies to
    count: int
    params: dict[str, Any]


@dataclass(frozen=True)
class LoggedRequest:
    seq: int
    path: str
    query: dict[str, str]
    status: int
    at: float  # server clock (injectable), seconds
    request_id: str
    retry_after: str | None = None


class TokenBucket:
    """Server-side rate limit: ``rate`` requests/second with a burst of ``burst``."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float]) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._updated = clock()
        self._lock = threading.Lock()

    def try_take(self) -> float:
        """0.0 when a token was taken; else the seconds until one is available."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            if self._tokens >= 1:
                self._tokens -= 1
                return 0.0
            return (1 - self._tokens) / self.rate


@dataclass(frozen=True)
class RandomFaults:
    """Faults drawn per request from a seeded hash of its sequence number: a retry is a new
    request with its own draw, and the same seed gives the same faults on every run."""

    fail_rate: float = 0.0  # share of requests answered ``fail_status``
    rate_limited_rate: float = 0.0  # share answered 429 with ``retry_after``
    seed: int = 1
    fail_status: int = 503
    retry_after: str = "1"

    def pick(self, seq: int) -> str | None:
        """ "status", "rate_limit" or None for request ``seq``."""
        draw = _mix(self.seed, seq, 8) / 2.0**64
        if draw < self.fail_rate:
            return "status"
        if draw < self.fail_rate + self.rate_limited_rate:
            return "rate_limit"
        return None


@dataclass
class MockState:
    """Everything the handler threads share; guarded by ``lock``."""

    dataset: UsageDataset
    key: str
    clock: Callable[[], float]
    wall_clock: Callable[[], float]
    limiter: TokenBucket | None
    retry_after_format: str = "seconds"  # or "http-date"
    duplicate_across_pages: bool = False
    drift: str | None = None  # "renamed_field" | "string_counts"
    drift_every: int = 1
    auth_status: int | None = None  # 401/403 to every request
    random_faults: RandomFaults | None = None
    faults: list[_Fault] = field(default_factory=list)
    log: list[LoggedRequest] = field(default_factory=list)
    seq: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class MockUsageApi:
    """The mock server: a context manager running ThreadingHTTPServer on 127.0.0.1 in a thread."""

    def __init__(
        self,
        companies: int = 1000,
        *,
        seed: int = 7,
        start: dt.date | None = None,
        end: dt.date | None = None,
        key: str = DEFAULT_KEY,
        port: int = 0,
        rate_limit_rps: float | None = None,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        dataset: UsageDataset | None = None,
    ) -> None:
        self.dataset = dataset or UsageDataset(companies, seed, start, end)
        limiter = None
        if rate_limit_rps:
            limiter = TokenBucket(rate_limit_rps, burst if burst is not None else max(1.0, rate_limit_rps), clock)
        self.state = MockState(self.dataset, key, clock, wall_clock, limiter)
        self._port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle ---------------------------------------------------------------------------
    def start(self) -> MockUsageApi:
        state = self.state
        handler = type("BoundUsageHandler", (_UsageHandler,), {"state": state})
        self._server = ThreadingHTTPServer(("127.0.0.1", self._port), handler)
        self._server.daemon_threads = True
        # A short poll interval: stop() (shutdown) returns within it, which keeps tests quick.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="mock-usage-api", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> MockUsageApi:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the mock API is not running")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ---- switches tests toggle at runtime ---------------------------------------------------
    def _schedule(self, kind: str, count: int, after: int, **params: Any) -> None:
        with self.state.lock:
            self.state.faults.append(_Fault(kind, self.state.seq + after + 1, count, params))

    def fail_next(self, count: int, status: int = 503, after: int = 0) -> None:
        """The next ``count`` requests (after skipping ``after``) answer ``status`` (a 5xx burst)."""
        self._schedule("status", count, after, status=status)

    def slow_next(self, count: int, seconds: float, after: int = 0) -> None:
        """The next ``count`` requests wait ``seconds`` before answering (client read timeouts)."""
        self._schedule("slow", count, after, seconds=seconds)

    def truncate_next(self, count: int, after: int = 0) -> None:
        """The next ``count`` responses are cut in half (invalid JSON, consistent Content-Length)."""
        self._schedule("truncate", count, after)

    def rate_limit_next(self, count: int, retry_after: str = "1", after: int = 0) -> None:
        """The next ``count`` requests get 429 with this literal ``Retry-After`` value."""
        self._schedule("rate_limit", count, after, retry_after=retry_after)

    def set_duplicates(self, enabled: bool = True) -> None:
        """Each page repeats the last record of the previous page (a cursor off by one)."""
        with self.state.lock:
            self.state.duplicate_across_pages = enabled

    def set_drift(self, mode: str | None, every: int = 1) -> None:
        """Schema drift on every ``every``-th record: "renamed_field" or "string_counts"."""
        if mode not in (None, "renamed_field", "string_counts"):
            raise ValueError(f"unknown drift mode {mode!r}")
        with self.state.lock:
            self.state.drift, self.state.drift_every = mode, max(1, every)

    def set_random_faults(self, faults: RandomFaults | None) -> None:
        """Answer a seeded random share of requests 5xx or 429 (None: no random faults)."""
        if faults is not None and not 0 <= faults.fail_rate + faults.rate_limited_rate <= 1:
            raise ValueError("fault rates must be within 0..1 together")
        with self.state.lock:
            self.state.random_faults = faults

    def deny_auth(self, status: int | None = 401) -> None:
        """Answer every request with 401/403 (None: back to normal)."""
        with self.state.lock:
            self.state.auth_status = status

    def set_retry_after_format(self, form: str) -> None:
        """How the rate limiter states Retry-After: "seconds" or "http-date"."""
        with self.state.lock:
            self.state.retry_after_format = form

    def reset_faults(self) -> None:
        with self.state.lock:
            self.state.faults.clear()
            self.state.duplicate_across_pages = False
            self.state.drift = None
            self.state.auth_status = None
            self.state.random_faults = None

    def correct(self, day: dt.date) -> int:
        """Change ``day``'s numbers, as a late correction would."""
        return self.dataset.correct(day)

    @property
    def requests(self) -> list[LoggedRequest]:
        """Every request so far, in arrival order (``at`` is the arrival on the server clock)."""
        with self.state.lock:
            return sorted(self.state.log, key=lambda r: r.seq)

    def clear_log(self) -> None:
        with self.state.lock:
            self.state.log.clear()


class _UsageHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the client reuses one connection
    disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms stalls
    state: MockState

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the request log is the record, not stderr."""

    def do_GET(self) -> None:
        state = self.state
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        with state.lock:
            state.seq += 1
            seq = state.seq
            active = [f for f in state.faults if f.first <= seq < f.first + f.count]
        arrived = state.clock()
        request_id = uuid.uuid4().hex
        status, body, headers = self._answer(parts.path, query, seq, active)
        with state.lock:
            state.log.append(
                LoggedRequest(seq, parts.path, query, status, arrived, request_id, headers.get("Retry-After"))
            )
        for fault in active:
            if fault.kind == "slow":
                time.sleep(fault.params["seconds"])
        self._send(status, body, {**headers, "X-Request-Id": request_id})

    def _answer(
        self, path: str, query: dict[str, str], seq: int, active: list[_Fault]
    ) -> tuple[int, bytes, dict[str, str]]:
        state = self.state
        if path != "/v1/usage/daily":
            return _error(404, "not found")
        if state.auth_status is not None or not self._authorized():
            return _error(state.auth_status or 401, "unauthorized")
        for fault in active:
            if fault.kind == "status":
                return _error(fault.params["status"], "injected failure")
            if fault.kind == "rate_limit":
                return _error(429, "rate limited", {"Retry-After": fault.params["retry_after"]})
        random_faults = state.random_faults
        if random_faults is not None:
            drawn = random_faults.pick(seq)
            if drawn == "status":
                return _error(random_faults.fail_status, "injected failure")
            if drawn == "rate_limit":
                return _error(429, "rate limited", {"Retry-After": random_faults.retry_after})
        if state.limiter is not None:
            wait = state.limiter.try_take()
            if wait > 0:
                return _error(429, "rate limited", {"Retry-After": self._retry_after(wait)})
        try:
            payload = self._page(query)
        except ValueError as exc:
            return _error(400, str(exc))
        body = json.dumps(payload, separators=(",", ":")).encode()
        if any(f.kind == "truncate" for f in active):
            body = body[: len(body) // 2]
        return 200, body, {}

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.encode(), self.state.key.encode())

    def _retry_after(self, wait: float) -> str:
        seconds = max(1, math.ceil(wait))
        if self.state.retry_after_format == "http-date":
            # HTTP dates have whole seconds: round up, or a client would come back a little early.
            return email.utils.formatdate(math.ceil(self.state.wall_clock() + seconds), usegmt=True)
        return str(seconds)

    def _page(self, query: dict[str, str]) -> dict[str, Any]:
        state = self.state
        try:
            day = dt.date.fromisoformat(query.get("date", ""))
        except ValueError:
            raise ValueError("date must be YYYY-MM-DD") from None
        try:
            limit = min(MAX_PAGE_SIZE, max(1, int(query.get("limit", "1000"))))
        except ValueError:
            raise ValueError("limit must be an integer") from None
        start = _decode_cursor(query.get("cursor"), day)
        records, next_index = state.dataset.scan(day, start, limit)
        if state.duplicate_across_pages and start > 0:
            previous, _ = state.dataset.scan(day, max(0, start - 1), 1)
            if previous and (not records or previous[0]["company_id"] != records[0]["company_id"]):
                records = [previous[0], *records]
        if state.drift:
            records = [_drifted(r, state.drift) if i % state.drift_every == 0 else r for i, r in enumerate(records)]
        done = next_index >= state.dataset.companies
        return {
            "date": day.isoformat(),
            "data": records,
            "next_cursor": None if done else _encode_cursor(day, next_index),
        }

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a read timeout we provoked)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    return status, json.dumps({"error": message}).encode(), headers or {}


def _encode_cursor(day: dt.date, index: int) -> str:
    return base64.urlsafe_b64encode(f"{day.isoformat()}:{index}".encode()).decode()


def _decode_cursor(cursor: str | None, day: dt.date) -> int:
    if not cursor:
        return 0
    try:
        cursor_day, _, index = base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")
        if cursor_day != day.isoformat():
            raise ValueError
        return int(index)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValueError("invalid cursor") from None


def _drifted(record: dict[str, Any], mode: str) -> dict[str, Any]:
    if mode == "renamed_field":
        drifted = dict(record)
        drifted["activeUsers"] = drifted.pop("active_users")
        return drifted
    return {**record, "active_users": str(record["active_users"]), "events": str(record["events"])}


def iter_days(start: dt.date, end: dt.date) -> Iterator[dt.date]:
    day = start
    while day <= end:
        yield day
        day += dt.timedelta(days=1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Mock Product Usage API (binds 127.0.0.1).")
    parser.add_argument("--port", type=int, default=7072)
    parser.add_argument("--companies", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--start", type=dt.date.fromisoformat, default=None)
    parser.add_argument("--end", type=dt.date.fromisoformat, default=None)
    parser.add_argument("--key", default=DEFAULT_KEY, help="expected bearer key")
    parser.add_argument("--rate-limit", type=float, default=None, help="requests/second before 429s")
    parser.add_argument("--fail-rate", type=float, default=0.0, help="share of requests answered --fail-status")
    parser.add_argument("--fail-status", type=int, default=503)
    parser.add_argument("--rate-limited-rate", type=float, default=0.0, help="share of requests answered 429")
    parser.add_argument("--injected-retry-after", default="1", help="Retry-After of the injected 429s")
    parser.add_argument("--fault-seed", type=int, default=1, help="seed of the random faults")
    args = parser.parse_args(argv)
    api = MockUsageApi(
        args.companies,
        seed=args.seed,
        start=args.start,
        end=args.end,
        key=args.key,
        port=args.port,
        rate_limit_rps=args.rate_limit,
    )
    if args.fail_rate or args.rate_limited_rate:
        api.set_random_faults(
            RandomFaults(
                args.fail_rate, args.rate_limited_rate, args.fault_seed, args.fail_status, args.injected_retry_after
            )
        )
    with api:
        print(f"mock usage API on {api.base_url} ({args.companies} companies)", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
