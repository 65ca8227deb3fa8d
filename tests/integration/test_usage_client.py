"""The usage API client against the mock API over real HTTP (127.0.0.1).

Backoffs and Retry-After waits go through an injected sleep, so nothing here really waits for
them; where the mock's own rate limit is involved it runs on the same fake clock, and the
assertions read the server's request log.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import itertools
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from pipeline_tools.mock_usage_api import MockUsageApi, RandomFaults, UsageDataset, _mix
from shared.adapters.usage_api import DayPull, TokenBucketLimiter, UsageApiClient
from shared.errors import AuthenticationFailed, PermanentError, RetryBudgetExhausted, UpstreamUnavailable
from shared.rules.usage_records import RecordScreen, ScreenResult
from shared.services.usage_ingest import iter_lines
from shared.settings import Settings

pytestmark = pytest.mark.integration

DAY = dt.date(2025, 3, 9)
COMPANIES = 2500
PAGE = 100
KEY = "client-test-key-5f2a"


class FakeTime:
    """One clock for the client's sleeps and the mock's rate limiter: sleeping advances it."""

    def __init__(self) -> None:
        self.now = 1_000.0
        self.epoch = 1_741_500_000.0  # wall-clock seconds at now == 1000
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.epoch + (self.now - 1_000.0)

    def wall_datetime(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.wall(), dt.UTC)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def api(fake_time: FakeTime) -> Iterator[MockUsageApi]:
    with MockUsageApi(
        COMPANIES, start=dt.date(2025, 1, 1), end=dt.date(2025, 12, 31), key=KEY, clock=fake_time.monotonic
    ) as server:
        yield server


def make_settings(api: MockUsageApi, **values: Any) -> Settings:
    base: dict[str, Any] = {
        "USAGE_API_BASE_URL": api.base_url,
        "USAGE_API_KEY": KEY,
        "USAGE_API_PAGE_SIZE": PAGE,
        "USAGE_API_RATE_LIMIT_RPS": 1000,
        "USAGE_API_MAX_ATTEMPTS": 4,
        "USAGE_API_RETRY_BUDGET": 20,
        "USAGE_API_READ_TIMEOUT_S": 2,
    }
    return Settings.from_values({**base, **values})


def make_client(api: MockUsageApi, fake_time: FakeTime, **values: Any) -> UsageApiClient:
    settings = make_settings(api, **values)
    limiter = TokenBucketLimiter(settings.usage_api_rate_limit_rps, clock=fake_time.monotonic, sleep=fake_time.sleep)
    return UsageApiClient(settings, limiter=limiter, sleep=fake_time.sleep, wall_clock=fake_time.wall_datetime)


def screen(pull: DayPull) -> ScreenResult:
    checker = RecordScreen(pull.activity_date)
    for line in iter_lines(pull.chunks()):
        checker.feed_line(line)
    return checker.result()


def expected_rows(api: MockUsageApi, day: dt.date = DAY) -> list[tuple[str, int, int]]:
    return [(r["company_id"], r["active_users"], r["events"]) for r in api.dataset.records(day)]


def staged_rows(result: ScreenResult) -> list[tuple[str, int, int]]:
    return [(r.company_id, r.active_users, r.events) for r in result.accepted]


def statuses(api: MockUsageApi) -> list[int]:
    return [r.status for r in api.requests]


# ---- pagination --------------------------------------------------------------------------------
def test_pulls_every_page_of_a_day_following_the_cursor(api: MockUsageApi, fake_time: FakeTime) -> None:
    pull = make_client(api, fake_time).fetch_day(DAY)
    log = api.requests
    assert pull.pages == len(log) >= COMPANIES // PAGE
    assert log[0].query == {"date": "2025-03-09", "limit": str(PAGE)}
    assert all("cursor" in r.query for r in log[1:])
    assert len({r.query.get("cursor") for r in log}) == len(log)  # every page asked once
    assert pull.request_ids == [r.request_id for r in log]
    assert staged_rows(screen(pull)) == expected_rows(api)
    assert pull.records == len(expected_rows(api))


def test_a_day_outside_the_dataset_is_one_empty_page(api: MockUsageApi, fake_time: FakeTime) -> None:
    pull = make_client(api, fake_time).fetch_day(dt.date(2024, 6, 1))
    assert (pull.pages, pull.records) == (1, 0)


# ---- transient faults are recovered from -------------------------------------------------------
def test_a_5xx_burst_mid_pagination_is_retried_with_backoff(api: MockUsageApi, fake_time: FakeTime) -> None:
    api.fail_next(3, status=503, after=5)
    pull = make_client(api, fake_time).fetch_day(DAY)
    assert statuses(api).count(503) == 3
    assert staged_rows(screen(pull)) == expected_rows(api)
    backoffs = [s for s in fake_time.sleeps if s >= 0.01]  # limiter waits at 1000 rps are ~1 ms
    assert len(backoffs) == 1  # the first two retries go at the next token; the third backs off


def test_a_lone_5xx_is_retried_at_the_next_token_without_backoff(api: MockUsageApi, fake_time: FakeTime) -> None:
    api.fail_next(1, status=503, after=5)
    pull = make_client(api, fake_time).fetch_day(DAY)
    assert statuses(api).count(503) == 1
    assert staged_rows(screen(pull)) == expected_rows(api)
    assert [s for s in fake_time.sleeps if s >= 0.01] == []


def test_random_5xx_and_429s_lose_no_page(api: MockUsageApi, fake_time: FakeTime) -> None:
    """5 % of requests answered 503 and 2 % 429 (seeded): every company-day arrives exactly once."""
    api.set_random_faults(RandomFaults(fail_rate=0.05, rate_limited_rate=0.02, seed=11))
    pull = make_client(api, fake_time, USAGE_API_PAGE_SIZE=20).fetch_day(DAY)
    seen = statuses(api)
    assert seen.count(503) > 0 and seen.count(429) > 0
    assert pull.pages == seen.count(200) == len(api.requests) - seen.count(503) - seen.count(429)
    assert pull.records == len(expected_rows(api))  # nothing received twice
    assert staged_rows(screen(pull)) == expected_rows(api)
    assert fake_time.sleeps.count(1.0) == seen.count(429)  # each 429's Retry-After: 1 was waited


def test_a_slow_response_times_out_and_is_retried(api: MockUsageApi, fake_time: FakeTime) -> None:
    api.slow_next(1, seconds=0.6, after=2)
    pull = make_client(api, fake_time, USAGE_API_READ_TIMEOUT_S=0.2).fetch_day(DAY)
    assert staged_rows(screen(pull)) == expected_rows(api)
    third, fourth = api.requests[2], api.requests[3]
    assert third.query == fourth.query  # the timed-out page was asked again


def test_a_truncated_json_body_is_retried(api: MockUsageApi, fake_time: FakeTime) -> None:
    api.truncate_next(2, after=1)
    pull = make_client(api, fake_time).fetch_day(DAY)
    assert staged_rows(screen(pull)) == expected_rows(api)
    assert api.requests[1].query == api.requests[2].query == api.requests[3].query


def test_records_repeated_across_pages_are_kept_once(api: MockUsageApi, fake_time: FakeTime) -> None:
    api.set_duplicates(True)
    pull = make_client(api, fake_time).fetch_day(DAY)
    result = screen(pull)
    assert result.duplicates > 0
    assert pull.records == len(expected_rows(api)) + result.duplicates
    assert staged_rows(result) == expected_rows(api)


def test_schema_drift_is_rejected_into_the_report_not_coerced(api: MockUsageApi, fake_time: FakeTime) -> None:
    api.set_drift("string_counts", every=10)
    result = screen(make_client(api, fake_time).fetch_day(DAY))
    assert result.rejects_by_reason == {"non_integer_active_users": result.rejected}
    assert result.rejected > 0
    assert len(result.accepted) + result.rejected == len(expected_rows(api))
    api.set_drift("renamed_field")
    renamed = screen(make_client(api, fake_time).fetch_day(DAY))
    assert renamed.rejects_by_reason == {"missing_active_users": len(expected_rows(api))}


# ---- Retry-After -------------------------------------------------------------------------------
def test_retry_after_seconds_is_waited_before_the_next_request(api: MockUsageApi, fake_time: FakeTime) -> None:
    api.rate_limit_next(1, retry_after="7", after=2)
    pull = make_client(api, fake_time).fetch_day(DAY)
    log = api.requests
    limited = next(i for i, r in enumerate(log) if r.status == 429)
    assert log[limited + 1].at - log[limited].at >= 7.0
    assert log[limited + 1].query == log[limited].query
    assert 7.0 in fake_time.sleeps
    assert staged_rows(screen(pull)) == expected_rows(api)


def test_retry_after_http_date_is_waited(api: MockUsageApi, fake_time: FakeTime) -> None:
    when = email.utils.formatdate(fake_time.wall() + 12, usegmt=True)
    api.rate_limit_next(1, retry_after=when, after=0)
    make_client(api, fake_time).fetch_day(DAY)
    log = api.requests
    assert log[0].status == 429
    assert log[1].at - log[0].at == pytest.approx(12.0, abs=1.0)  # HTTP dates have 1 s resolution


def test_retry_after_is_capped_by_the_setting(api: MockUsageApi, fake_time: FakeTime) -> None:
    api.rate_limit_next(1, retry_after="3600")
    make_client(api, fake_time, USAGE_API_MAX_RETRY_AFTER_S=15).fetch_day(DAY)
    assert max(fake_time.sleeps) == 15.0


@pytest.mark.parametrize("form", ["seconds", "http-date"])
def test_the_servers_own_rate_limit_is_honoured(fake_time: FakeTime, form: str) -> None:
    """A client configured faster than the server: every 429's Retry-After is waited out."""
    with MockUsageApi(
        600,
        start=DAY,
        end=DAY,
        key=KEY,
        rate_limit_rps=2,
        burst=1,
        clock=fake_time.monotonic,
        wall_clock=fake_time.wall,
    ) as api:
        api.set_retry_after_format(form)
        pull = make_client(api, fake_time, USAGE_API_RETRY_BUDGET=50).fetch_day(DAY)
        log = api.requests
        assert 429 in statuses(api)
        for before, after in itertools.pairwise(log):
            if before.status == 429:
                assert after.at - before.at >= 1.0 - 1e-6
        assert staged_rows(screen(pull)) == expected_rows(api)


def test_the_client_rate_limit_prevents_429s(fake_time: FakeTime) -> None:
    """Real clock: client and server both at 50 requests/second, the server never says 429."""
    with MockUsageApi(2000, start=DAY, end=DAY, key=KEY, rate_limit_rps=50) as api:
        settings = make_settings(api, USAGE_API_RATE_LIMIT_RPS=50)
        pull = UsageApiClient(settings).fetch_day(DAY)
        assert pull.pages >= 20
        assert 429 not in statuses(api)


# ---- permanent failures ------------------------------------------------------------------------
@pytest.mark.parametrize("status", [401, 403])
def test_auth_failure_fails_at_once_without_retries(api: MockUsageApi, fake_time: FakeTime, status: int) -> None:
    api.deny_auth(status)
    with pytest.raises(AuthenticationFailed, match="USAGE_API_KEY"):
        make_client(api, fake_time).fetch_day(DAY)
    assert statuses(api) == [status]
    assert [s for s in fake_time.sleeps if s >= 0.01] == []


def test_a_wrong_key_is_an_auth_failure(api: MockUsageApi, fake_time: FakeTime) -> None:
    with pytest.raises(AuthenticationFailed):
        make_client(api, fake_time, USAGE_API_KEY="wrong-key-123").fetch_day(DAY)
    assert statuses(api) == [401]


def test_an_exhausted_retry_budget_fails_the_pull(api: MockUsageApi, fake_time: FakeTime) -> None:
    api.fail_next(100, status=503, after=1)
    with pytest.raises(RetryBudgetExhausted):
        make_client(api, fake_time, USAGE_API_RETRY_BUDGET=3, USAGE_API_MAX_ATTEMPTS=10).fetch_day(DAY)
    assert statuses(api) == [200, 503, 503, 503, 503]


def test_max_attempts_per_request_then_the_error_surfaces(api: MockUsageApi, fake_time: FakeTime) -> None:
    api.fail_next(100, status=502)
    with pytest.raises(UpstreamUnavailable, match="502"):
        make_client(api, fake_time, USAGE_API_MAX_ATTEMPTS=3).fetch_day(DAY)
    assert statuses(api) == [502, 502, 502]


def test_the_budget_is_per_run_and_shared_by_its_requests(api: MockUsageApi, fake_time: FakeTime) -> None:
    client = make_client(api, fake_time, USAGE_API_RETRY_BUDGET=2, USAGE_API_RETRY_BUDGET_PER_PAGE=0)
    api.fail_next(2, status=500)
    client.fetch_day(DAY)
    api.fail_next(1, status=500)
    with pytest.raises(RetryBudgetExhausted):
        client.fetch_day(DAY)
    api.fail_next(2, status=500)
    client.for_run().fetch_day(DAY)  # a new run starts with a fresh budget


def flaky_every_other_request(api: MockUsageApi, requests_: int) -> None:
    """Every odd request answers 503: each page needs one retry, however many pages."""
    for k in range(requests_):
        api.fail_next(1, status=503, after=2 * k)


def test_a_fixed_budget_runs_out_on_a_long_flaky_pull(api: MockUsageApi, fake_time: FakeTime) -> None:
    flaky_every_other_request(api, 30)
    client = make_client(api, fake_time, USAGE_API_RETRY_BUDGET=5, USAGE_API_RETRY_BUDGET_PER_PAGE=0)
    with pytest.raises(RetryBudgetExhausted, match="5 retries"):
        client.fetch_day(DAY)


def test_the_budget_grows_with_the_pages_so_a_long_flaky_pull_completes(api: MockUsageApi, fake_time: FakeTime) -> None:
    flaky_every_other_request(api, 30)
    client = make_client(api, fake_time, USAGE_API_RETRY_BUDGET=5, USAGE_API_RETRY_BUDGET_PER_PAGE=1)
    pull = client.fetch_day(DAY)
    assert pull.pages == COMPANIES // PAGE and pull.records == len(api.dataset.records(DAY))
    assert statuses(api).count(503) == COMPANIES // PAGE  # one retry per page, 25 > the base of 5
    assert client.budget.used == COMPANIES // PAGE


def test_an_outage_still_stops_at_the_base_budget(api: MockUsageApi, fake_time: FakeTime) -> None:
    api.fail_next(1000, status=503)
    client = make_client(
        api, fake_time, USAGE_API_RETRY_BUDGET=3, USAGE_API_RETRY_BUDGET_PER_PAGE=5, USAGE_API_MAX_ATTEMPTS=10
    )
    with pytest.raises(RetryBudgetExhausted):
        client.fetch_day(DAY)
    assert statuses(api) == [503] * 4  # no page arrived, so nothing was earned


def test_a_page_beyond_the_size_cap_fails_the_day_without_retries(api: MockUsageApi, fake_time: FakeTime) -> None:
    with pytest.raises(PermanentError, match="USAGE_API_MAX_PAGE_BYTES"):
        make_client(api, fake_time, USAGE_API_MAX_PAGE_BYTES=2048).fetch_day(DAY)
    assert statuses(api) == [200]  # refused once, not retried: the same page would be as big


# ---- secrets -----------------------------------------------------------------------------------
def test_the_api_key_never_reaches_the_logs(
    api: MockUsageApi, fake_time: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    api.fail_next(1, status=503)
    make_client(api, fake_time).fetch_day(DAY)
    api.deny_auth(401)
    with pytest.raises(AuthenticationFailed) as info:
        make_client(api, fake_time).fetch_day(DAY)
    assert "retrying" in caplog.text
    assert KEY not in caplog.text
    assert KEY not in str(info.value)


# ---- the mock's dataset and contract -----------------------------------------------------------
def test_the_dataset_is_deterministic_and_uses_the_shared_company_ids() -> None:
    a, b = UsageDataset(500, seed=3), UsageDataset(500, seed=3)
    assert a.records(DAY) == b.records(DAY)
    ids = [r["company_id"] for r in a.records(DAY)]
    assert ids == sorted(ids) and ids[0] in ("C000001", "C000002", "C000003")
    assert all(len(i) == 7 and i.startswith("C") for i in ids)


def test_the_dataset_has_missing_days_inactive_stretches_and_corrections() -> None:
    data = UsageDataset(2000, seed=7)
    records = data.records(DAY)
    assert 0.9 * 2000 < len(records) < 2000  # some company-days are missing entirely
    assert sum(1 for r in records if r["active_users"] == r["events"] == 0) > 0.05 * len(records)
    before = {r["company_id"]: (r["active_users"], r["events"]) for r in records}
    data.correct(DAY)
    after = {r["company_id"]: (r["active_users"], r["events"]) for r in data.records(DAY)}
    assert after.keys() == before.keys()
    changed = sum(1 for k in before if before[k] != after[k])
    assert 0.05 * len(before) < changed < 0.2 * len(before)
    assert data.records(DAY + dt.timedelta(days=1)) == UsageDataset(2000, seed=7).records(DAY + dt.timedelta(days=1))


def reference_record(data: UsageDataset, n: int, day: dt.date, version: int) -> tuple[int, int] | None:
    """The dataset's rules written plainly with one ``_mix`` per number (the page code shares
    the hashing steps of a company's leading values, for speed)."""
    seed, ordinal = data.seed, day.toordinal()
    if _mix(seed, n, ordinal, 1) % 100 < data.MISSING_PERCENT:
        return None
    if _mix(seed, n, ordinal // data.STRETCH_DAYS, 2) % 100 < data.INACTIVE_PERCENT:
        active_users, events = 0, 0
    else:
        size = 1 + _mix(seed, n, 3) % 50
        active_users = _mix(seed, n, ordinal, 4) % (size + 1)
        events = active_users * (1 + _mix(seed, n, ordinal, 5) % 20)
    for v in range(1, version + 1):
        if _mix(seed, n, ordinal, v, 6) % 100 < data.CORRECTED_PERCENT:
            active_users += 1
            events += 1 + _mix(seed, n, ordinal, v, 7) % 10
    return active_users, events


def test_a_page_has_the_numbers_of_the_datasets_rules() -> None:
    data = UsageDataset(600, seed=5)
    for version in (0, 2):
        expected = [(n, reference_record(data, n, DAY, version)) for n in range(1, 601)]
        page = {r["company_id"]: (r["active_users"], r["events"]) for r in data.records(DAY, version)}
        assert page == {f"C{n:06d}": numbers for n, numbers in expected if numbers is not None}


def test_random_faults_are_seeded_per_request_at_about_the_rates_asked() -> None:
    faults = RandomFaults(fail_rate=0.05, rate_limited_rate=0.01, seed=3)
    picks = [faults.pick(seq) for seq in range(1, 20_001)]
    assert picks == [RandomFaults(fail_rate=0.05, rate_limited_rate=0.01, seed=3).pick(s) for s in range(1, 20_001)]
    assert 0.045 < picks.count("status") / len(picks) < 0.055
    assert 0.007 < picks.count("rate_limit") / len(picks) < 0.013
    assert picks != [RandomFaults(fail_rate=0.05, rate_limited_rate=0.01, seed=4).pick(s) for s in range(1, 20_001)]


def test_the_dataset_is_empty_outside_its_date_range() -> None:
    assert UsageDataset(100, start=DAY, end=DAY).records(DAY - dt.timedelta(days=1)) == []


def test_a_foreign_cursor_is_a_bad_request_and_not_retried(api: MockUsageApi, fake_time: FakeTime) -> None:
    response = requests.get(
        f"{api.base_url}/v1/usage/daily",
        params={"date": "2025-03-09", "cursor": "bm90LWEtY3Vyc29y"},
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=5,
    )
    assert response.status_code == 400
    assert response.json() == {"error": "invalid cursor"}
