"""The small parts of the usage API client, each alone (shared/adapters/usage_api.py)."""

from __future__ import annotations

import datetime as dt
import email.utils

import pytest
import requests
from pydantic import SecretStr
from tenacity import RetryCallState, Retrying, stop_after_attempt

from shared.adapters.usage_api import (
    BearerAuth,
    CursorPaginator,
    RetryBudget,
    TokenBucketLimiter,
    classify_response,
    is_transient,
    parse_page,
    parse_retry_after,
    redact_url,
    wait_retry_after_or_backoff,
)
from shared.errors import (
    AuthenticationFailed,
    PermanentError,
    RateLimited,
    RetryBudgetExhausted,
    UpstreamUnavailable,
)
from shared.logs import register_secret

NOW = dt.datetime(2025, 3, 10, 12, 0, 0, tzinfo=dt.UTC)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def response(status: int, body: bytes = b"{}", headers: dict[str, str] | None = None) -> requests.Response:
    r = requests.Response()
    r.status_code = status
    r._content = body
    r._content_consumed = True
    r.headers.update(headers or {})
    return r


# ---- auth --------------------------------------------------------------------------------------
def test_bearer_auth_sets_the_header_and_hides_the_key_in_repr() -> None:
    auth = BearerAuth(SecretStr("s3cret-key"))
    prepared = requests.Request("GET", "http://127.0.0.1/x").prepare()
    assert auth(prepared).headers["Authorization"] == "Bearer s3cret-key"
    assert "s3cret" not in repr(auth)


# ---- paginator ---------------------------------------------------------------------------------
def test_cursor_paginator_follows_next_cursor_until_null() -> None:
    paginator = CursorPaginator()
    params: dict[str, object] = {"date": "2025-03-09", "cursor": "stale"}
    paginator.init_request(params)
    assert "cursor" not in params
    paginator.update_state({"data": [], "next_cursor": "abc"})
    paginator.update_request(params)
    assert params["cursor"] == "abc" and paginator.has_next
    paginator.update_state({"data": [], "next_cursor": None})
    assert not paginator.has_next


def test_cursor_paginator_refuses_a_cursor_loop() -> None:
    paginator = CursorPaginator()
    paginator.update_state({"next_cursor": "abc"})
    with pytest.raises(PermanentError, match="loop"):
        paginator.update_state({"next_cursor": "abc"})


def test_cursor_paginator_treats_a_non_string_cursor_as_a_bad_body() -> None:
    with pytest.raises(UpstreamUnavailable):
        CursorPaginator().update_state({"next_cursor": 5})


# ---- rate limiter ------------------------------------------------------------------------------
def test_token_bucket_spaces_requests_at_the_configured_rate() -> None:
    clock = FakeClock()
    limiter = TokenBucketLimiter(rate=4, capacity=1, clock=clock, sleep=clock.sleep)
    for _ in range(5):
        limiter.acquire()
    assert clock.slept == pytest.approx([0.25, 0.25, 0.25, 0.25])
    assert clock.now == pytest.approx(101.0)


def test_token_bucket_does_not_wait_when_requests_are_slower_than_the_rate() -> None:
    clock = FakeClock()
    limiter = TokenBucketLimiter(rate=2, capacity=1, clock=clock, sleep=clock.sleep)
    limiter.acquire()
    clock.now += 1.0
    assert limiter.acquire() == 0.0
    assert clock.slept == []


def test_token_bucket_allows_a_burst_up_to_capacity() -> None:
    clock = FakeClock()
    limiter = TokenBucketLimiter(rate=1, capacity=3, clock=clock, sleep=clock.sleep)
    waits = [limiter.acquire() for _ in range(4)]
    assert waits == pytest.approx([0, 0, 0, 1.0])


# ---- Retry-After -------------------------------------------------------------------------------
def test_retry_after_in_seconds() -> None:
    assert parse_retry_after("7", NOW, cap=120) == 7.0


def test_retry_after_as_http_date() -> None:
    value = email.utils.format_datetime(NOW + dt.timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(value, NOW, cap=120) == pytest.approx(30.0)


def test_retry_after_is_capped() -> None:
    assert parse_retry_after("3600", NOW, cap=120) == 120.0
    far = email.utils.format_datetime(NOW + dt.timedelta(days=1), usegmt=True)
    assert parse_retry_after(far, NOW, cap=60) == 60.0


def test_retry_after_in_the_past_or_negative_means_now() -> None:
    past = email.utils.format_datetime(NOW - dt.timedelta(minutes=5), usegmt=True)
    assert parse_retry_after(past, NOW, cap=120) == 0.0
    assert parse_retry_after("-3", NOW, cap=120) == 0.0


@pytest.mark.parametrize("value", [None, "", "soon", "nan"])
def test_unreadable_retry_after_leaves_the_wait_to_the_backoff(value: str | None) -> None:
    assert parse_retry_after(value, NOW, cap=120) is None


# ---- classification ----------------------------------------------------------------------------
@pytest.mark.parametrize("status", [401, 403])
def test_auth_failures_are_permanent(status: int) -> None:
    with pytest.raises(AuthenticationFailed) as info:
        classify_response(response(status), NOW, 120)
    assert not is_transient(info.value)


def test_429_is_rate_limited_with_its_retry_after() -> None:
    with pytest.raises(RateLimited) as info:
        classify_response(response(429, headers={"Retry-After": "9"}), NOW, 5)
    assert info.value.retry_after == 5.0
    assert is_transient(info.value)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_is_transient(status: int) -> None:
    with pytest.raises(UpstreamUnavailable):
        classify_response(response(status), NOW, 120)


def test_other_4xx_is_permanent_and_2xx_passes() -> None:
    with pytest.raises(PermanentError):
        classify_response(response(400), NOW, 120)
    classify_response(response(200), NOW, 120)


def test_truncated_or_shapeless_bodies_are_transient() -> None:
    with pytest.raises(UpstreamUnavailable):
        parse_page(response(200, b'{"date": "2025-03-09", "data": [{"comp'))
    with pytest.raises(UpstreamUnavailable):
        parse_page(response(200, b'{"date": "2025-03-09"}'))
    assert parse_page(response(200, b'{"data": [], "next_cursor": null}'))["data"] == []


def test_a_page_larger_than_the_cap_is_refused_not_loaded() -> None:
    big = b'{"data": [' + b",".join([b'{"company_id": "c"}'] * 1000) + b"]}"
    with pytest.raises(PermanentError, match="USAGE_API_MAX_PAGE_BYTES"):
        parse_page(response(200, big), max_bytes=4096)
    assert len(parse_page(response(200, big), max_bytes=len(big))["data"]) == 1000


def test_budget_and_auth_errors_are_not_retried() -> None:
    assert not is_transient(RetryBudgetExhausted("x"))
    assert not is_transient(ValueError("x"))


# ---- retry policy ------------------------------------------------------------------------------
def test_wait_uses_retry_after_when_rate_limited_and_backoff_otherwise() -> None:
    wait = wait_retry_after_or_backoff(lambda _state: 0.5)  # type: ignore[arg-type, return-value]
    state = RetryCallState(Retrying(), fn=None, args=(), kwargs={})
    state.set_exception((RateLimited, RateLimited("slow down", retry_after=12.0), None))
    assert wait(state) == 12.0
    state.set_exception((RateLimited, RateLimited("slow down", retry_after=None), None))
    assert wait(state) == 0.5
    state.attempt_number = 3
    state.set_exception((UpstreamUnavailable, UpstreamUnavailable("503"), None))
    assert wait(state) == 0.5


def test_a_requests_first_two_5xx_are_retried_at_the_next_token_without_backoff() -> None:
    wait = wait_retry_after_or_backoff(lambda _state: 0.5)  # type: ignore[arg-type, return-value]
    state = RetryCallState(Retrying(), fn=None, args=(), kwargs={})
    state.set_exception((UpstreamUnavailable, UpstreamUnavailable("503"), None))
    assert wait(state) == 0.0  # the rate limiter still paces the retry
    state.attempt_number = 2
    assert wait(state) == 0.0
    state.attempt_number = 3
    assert wait(state) == 0.5  # a third failure in a row backs off


def test_retry_budget_is_shared_across_requests_and_runs_out() -> None:
    budget = RetryBudget(2)
    budget.spend()
    budget.spend()
    with pytest.raises(RetryBudgetExhausted):
        budget.spend()


def test_an_exhausted_budget_stops_tenacity_before_the_next_sleep() -> None:
    budget, sleeps, calls = RetryBudget(1), [], []

    def flaky() -> None:
        calls.append(1)
        raise UpstreamUnavailable("503")

    retrying = Retrying(
        stop=stop_after_attempt(10), sleep=sleeps.append, before_sleep=lambda _s: budget.spend(), reraise=True
    )
    with pytest.raises(RetryBudgetExhausted):
        retrying(flaky)
    assert len(calls) == 2 and len(sleeps) == 1


# ---- logging -----------------------------------------------------------------------------------
def test_redact_url_drops_userinfo_and_masks_credentials() -> None:
    register_secret("very-secret-key")
    url = "https://user:pw@api.example.com:8443/v1/usage/daily?date=2025-03-09&token=abc&x=very-secret-key"
    safe = redact_url(url)
    assert "user" not in safe and "pw@" not in safe and "abc" not in safe and "very-secret-key" not in safe
    assert safe.startswith("https://api.example.com:8443/v1/usage/daily?date=2025-03-09")
