"""Benchmark: pull days of N companies from the mock Usage API at a configured rate limit.

The mock runs in its own process (so the peak memory reported is the client's alone), with the
same rate limit on its side, so a client that paced itself badly would see 429s. It can also
answer a seeded random share of requests 503 and 429 (``--fail-rate``, ``--rate-limited-rate``):
the faults a pull must ride out without losing pages or much of the rate budget. Reports the
request rate (every request, retries included: what the limit counts) and the page rate as
fractions of the rate limit, the answers by status, and the peak RSS of this process; and checks
that every company-day of the mock's dataset arrived exactly once.

    PYTHONPATH=$PWD .venv/bin/python bench/usage_pull_bench.py --companies 100000 --rps 20 --page-size 1000
    PYTHONPATH=$PWD .venv/bin/python bench/usage_pull_bench.py --days 10 --fail-rate 0.05 --rate-limited-rate 0.003
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline_tools.mock_usage_api import UsageDataset  # noqa: E402
from shared.adapters.usage_api import DayPull, TokenBucketLimiter, UsageApiClient  # noqa: E402
from shared.rules.usage_records import RecordScreen  # noqa: E402
from shared.services.usage_ingest import iter_lines  # noqa: E402
from shared.settings import Settings  # noqa: E402

DAY = dt.date(2025, 3, 9)
KEY = "bench-key-000"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_listening(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the mock API did not start")


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--companies", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=1, help="consecutive days pulled by one run (one client)")
    parser.add_argument("--rps", type=float, default=20.0, help="client rate limit (USAGE_API_RATE_LIMIT_RPS)")
    parser.add_argument("--server-rps", type=float, default=None, help="mock's own limit (default: --rps)")
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--fail-rate", type=float, default=0.0, help="share of requests the mock answers 503")
    parser.add_argument("--rate-limited-rate", type=float, default=0.0, help="share the mock answers 429")
    parser.add_argument("--injected-retry-after", default="1", help="Retry-After of those 429s (seconds)")
    parser.add_argument("--fault-seed", type=int, default=1)
    args = parser.parse_args()
    days = [DAY + dt.timedelta(days=i) for i in range(args.days)]

    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline_tools.mock_usage_api",
            *("--port", str(port), "--companies", str(args.companies), "--key", KEY),
            *("--start", days[0].isoformat(), "--end", days[-1].isoformat()),
            *("--rate-limit", str(args.server_rps or args.rps)),
            *("--fail-rate", str(args.fail_rate), "--rate-limited-rate", str(args.rate_limited_rate)),
            *("--injected-retry-after", args.injected_retry_after, "--fault-seed", str(args.fault_seed)),
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
    )
    answers: collections.Counter[int] = collections.Counter()
    try:
        wait_until_listening(port)
        settings = Settings.from_values(
            {
                "USAGE_API_BASE_URL": f"http://127.0.0.1:{port}",
                "USAGE_API_KEY": KEY,
                "USAGE_API_RATE_LIMIT_RPS": args.rps,
                "USAGE_API_PAGE_SIZE": args.page_size,
            }
        )
        waits: list[float] = []  # the client's retry waits: Retry-After and backoff, not pacing

        def retry_sleep(seconds: float) -> None:
            waits.append(seconds)
            time.sleep(seconds)

        limiter = TokenBucketLimiter(settings.usage_api_rate_limit_rps)
        client = UsageApiClient(settings, limiter=limiter, sleep=retry_sleep)

        def count(response: requests.Response, *_args: Any, **_kwargs: Any) -> None:
            answers[response.status_code] += 1

        client.session.hooks["response"].append(count)
        dataset = UsageDataset(args.companies, start=days[0], end=days[-1])  # the mock's numbers
        rss_before = peak_rss_mib()
        pulled = validated = 0.0
        pages = records = 0
        for day in days:
            started = time.perf_counter()
            pull = client.fetch_day(day)
            pulled += time.perf_counter() - started
            pages, records = pages + pull.pages, records + pull.records
            started = time.perf_counter()
            check_exactly_once(pull, dataset)
            validated += time.perf_counter() - started
            pull.close()
    finally:
        server.terminate()
        server.wait(timeout=10)

    requests_made = sum(answers.values())
    request_rate, page_rate = requests_made / pulled, pages / pulled
    statuses = ", ".join(f"{status}: {n:,}" for status, n in sorted(answers.items()))
    print(f"companies x days     {args.companies:>12,} x {args.days}")
    print(f"rate limit (rps)     {args.rps:>12.1f}   page size {args.page_size}")
    print(
        f"injected faults      {args.fail_rate:>12.1%} 503, {args.rate_limited_rate:.1%} 429 (seed {args.fault_seed})"
    )
    print(f"pages / records      {pages:>12,} / {records:,}: every company-day exactly once")
    print(f"requests by status   {requests_made:>12,}   ({statuses}); retries {client.budget.used}")
    print(f"pull time            {pulled:>12.2f} s   (validation and the exactly-once check {validated:.2f} s)")
    print(f"requests/s           {request_rate:>12.2f}   = {request_rate / args.rps:.1%} of the rate limit")
    print(f"pages/s              {page_rate:>12.2f}   = {page_rate / args.rps:.1%} of the rate limit")
    waited = sum(waits)
    outside = requests_made / (pulled - waited)
    print(f"retry waits          {waited:>12.2f} s   ({len(waits)} waits: Retry-After of the 429s, backoff of repeats)")
    print(f"requests/s outside   {outside:>12.2f}   = {outside / args.rps:.1%} of the rate limit, retry waits aside")
    print(f"records/s            {records / pulled:>12,.0f}")
    print(f"peak RSS             {peak_rss_mib():>12.1f} MiB (before the pull {rss_before:.1f} MiB)")


def check_exactly_once(pull: DayPull, dataset: UsageDataset) -> None:
    """Every record of the day's dataset arrived, none twice, none altered: a pull that lost or
    repeated a page under faults fails the benchmark."""
    screen = RecordScreen(pull.activity_date)
    for line in iter_lines(pull.chunks()):
        screen.feed_line(line)
    got = [(r.company_id, r.active_users, r.events) for r in screen.result().accepted]
    expected = [(r["company_id"], r["active_users"], r["events"]) for r in dataset.records(pull.activity_date)]
    if pull.records != len(expected) or got != expected:
        raise SystemExit(
            f"{pull.activity_date}: {pull.records:,} records received, {len(got):,} accepted, "
            f"{len(expected):,} expected: pages were lost or repeated"
        )


if __name__ == "__main__":
    main()
