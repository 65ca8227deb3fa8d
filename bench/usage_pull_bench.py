"""Benchmark: pull one day of N companies from the mock Usage API at a configured rate limit.

The mock runs in its own process (so the peak memory reported is the client's alone), with the
same rate limit on its side, so a client that paced itself badly would see 429s. Reports the
throughput as a fraction of the rate limit, the retries spent, and the peak RSS of this process.

    .venv/bin/python bench/usage_pull_bench.py --companies 100000 --rps 20 --page-size 1000
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from shared.adapters.usage_api import UsageApiClient  # noqa: E402
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
    parser.add_argument("--rps", type=float, default=20.0, help="client rate limit (USAGE_API_RATE_LIMIT_RPS)")
    parser.add_argument("--server-rps", type=float, default=None, help="mock's own limit (default: --rps)")
    parser.add_argument("--page-size", type=int, default=1000)
    args = parser.parse_args()

    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline_tools.mock_usage_api",
            "--port",
            str(port),
            "--companies",
            str(args.companies),
            "--start",
            DAY.isoformat(),
            "--end",
            DAY.isoformat(),
            "--key",
            KEY,
            "--rate-limit",
            str(args.server_rps or args.rps),
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
    )
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
        client = UsageApiClient(settings)
        rss_before = peak_rss_mib()
        started = time.perf_counter()
        pull = client.fetch_day(DAY)
        pulled = time.perf_counter() - started
        screen = RecordScreen(DAY)
        for line in iter_lines(pull.chunks()):
            screen.feed_line(line)
        result = screen.result()
        total = time.perf_counter() - started
        pull.close()
    finally:
        server.terminate()
        server.wait(timeout=10)

    requests_made = pull.pages + client.budget.used
    achieved_rps = requests_made / pulled
    print(f"companies            {args.companies:>12,}")
    print(f"rate limit (rps)     {args.rps:>12.1f}   page size {args.page_size}")
    print(f"pages / records      {pull.pages:>12,} / {pull.records:,} (accepted {len(result.accepted):,})")
    print(f"retries (429/5xx)    {client.budget.used:>12}")
    print(f"pull time            {pulled:>12.2f} s   (with validation {total:.2f} s)")
    print(f"requests/s           {achieved_rps:>12.2f}   = {achieved_rps / args.rps:.1%} of the rate limit")
    print(f"records/s            {pull.records / pulled:>12,.0f}")
    print(f"peak RSS             {peak_rss_mib():>12.1f} MiB (before the pull {rss_before:.1f} MiB)")


if __name__ == "__main__":
    main()
