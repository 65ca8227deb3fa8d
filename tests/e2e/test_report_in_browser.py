"""SPEC section 11 as an analyst sees it: the run report of a pipeline run (the functions driven by
the local runner into DuckDB), opened in a real headless Chromium over the DevTools protocol.

The page must open with no network (every request it makes is file: or data:), log no console
error, draw every chart (pixels, not just markup), carry the expected titles, and print the numbers
a query of the warehouse gives. The screenshot is kept beside the report for a human to look at.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import websocket
from PIL import Image

from pipeline_tools.report import write_report

if TYPE_CHECKING:  # the fixtures come from tests/e2e/conftest.py; only their types are named here
    from tests.e2e.conftest import Pipeline, PipelineFactory

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium")
CHART_TITLES = [
    "Active users per day",
    "Events per day",
    "Companies at churn risk per day",
    "Rows built and data-quality findings per day",
    "Input arrival and freshness per day",
    "Largest week-over-week drops in events (as of {last})",
]
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--window-size=1280,900",  # the width the page is measured and shot at
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",  # Chromium picks a free port and writes it to DevToolsActivePort
]


# ---- a minimal DevTools-protocol client --------------------------------------------------------
class Browser:
    """One headless Chromium with a fresh profile, one page, driven over CDP (websocket-client)."""

    def __init__(self, binary: str, profile: Path) -> None:
        self.process = subprocess.Popen(
            [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its helpers share the group, stopped together by this PID
        )
        port = self._devtools_port(profile / "DevToolsActivePort")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as response:
            page = next(t for t in json.load(response) if t["type"] == "page")
        # Chromium refuses websocket clients that send an Origin it was not told to allow.
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=60, suppress_origin=True)
        self.events: list[dict[str, Any]] = []
        self._next_id = 0

    def _devtools_port(self, port_file: Path, timeout_s: float = 30) -> int:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.process.returncode}")
            if port_file.exists() and port_file.read_text().strip():
                return int(port_file.read_text().splitlines()[0])
            time.sleep(0.1)
        raise TimeoutError("chromium did not open its DevTools port")

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        call_id = self._next_id
        self.ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]
            self.events.append(message)

    def wait_for(self, event: str, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while not any(e.get("method") == event for e in self.events):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {event}")
            self.events.append(json.loads(self.ws.recv()))

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(result["exceptionDetails"])
        return result["result"]["value"]

    def close(self) -> None:
        self.ws.close()
        os.killpg(self.process.pid, signal.SIGTERM)  # the group this test started, by its PID
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    if CHROMIUM is None:
        pytest.skip(
            "Debian's chromium is not installed (scripts/bootstrap.sh installs it as root with apt; "
            "elsewhere: apt-get install chromium)"
        )
    chromium = Browser(CHROMIUM, tmp_path / "chromium-profile")
    try:
        yield chromium
    finally:
        chromium.close()


# ---- what the page shows -----------------------------------------------------------------------
READ_PAGE = """
(() => {
  const metrics = (row) => Object.fromEntries(
    [...row.querySelectorAll('[data-metric]')].map(td => [td.dataset.metric, td.textContent.trim()]));
  const box = (el) => {
    const r = el.getBoundingClientRect();
    return [r.left, r.top + window.scrollY, r.width, r.height];
  };
  return {
    title: document.title,
    headings: [...document.querySelectorAll('h1, h2')].map(h => h.textContent.trim()),
    charts: [...document.querySelectorAll('section.chart')].map(s => {
      const svg = s.querySelector('figure svg');
      return {title: s.querySelector('h2').textContent.trim(), box: svg ? box(svg) : null,
              marks: svg ? svg.querySelectorAll('path, rect, use').length : 0};
    }),
    days: Object.fromEntries([...document.querySelectorAll('#per-day tr[data-day]')].map(
      tr => [tr.dataset.day, {built: !tr.classList.contains('unbuilt'), ...metrics(tr)}])),
    drops: [...document.querySelectorAll('#drops tbody tr')].map(tr => ({company: tr.dataset.company, ...metrics(tr)})),
    scripts: document.scripts.length,
  };
})()
"""


def open_report(browser: Browser, html: Path, screenshot: Path) -> dict[str, Any]:
    for domain in ("Page", "Runtime", "Log", "Network"):
        browser.send(f"{domain}.enable")
    browser.send("Page.navigate", url=html.resolve().as_uri())
    browser.wait_for("Page.loadEventFired")
    height = int(browser.send("Page.getLayoutMetrics")["cssContentSize"]["height"])
    browser.send("Emulation.setDeviceMetricsOverride", width=1280, height=height, deviceScaleFactor=1, mobile=False)
    page = browser.evaluate(READ_PAGE)  # boxes measured at the screenshot's size
    shot = browser.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
    screenshot.write_bytes(base64.b64decode(shot["data"]))
    return page


def console_errors(browser: Browser) -> list[str]:
    errors = []
    for event in browser.events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            errors.append(str(params["exceptionDetails"]))
        elif method == "Runtime.consoleAPICalled" and params.get("type") in {"error", "assert"}:
            errors.append(str(params.get("args")))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            errors.append(params["entry"]["text"])
    return errors


def requested_urls(browser: Browser) -> list[str]:
    return [e["params"]["request"]["url"] for e in browser.events if e.get("method") == "Network.requestWillBeSent"]


def drawn(image: Image.Image) -> bool:
    """Not blank: many colours and a fair share of non-white pixels."""
    grey = image.convert("L")
    non_white = sum(grey.histogram()[:240]) / (grey.width * grey.height)
    return len(image.convert("RGB").getcolors(maxcolors=1 << 20) or []) > 20 and non_white > 0.02


# ---- the warehouse, queried independently of sql/report ----------------------------------------
def warehouse_days(pipeline: Pipeline) -> dict[str, dict[str, str]]:
    rows = pipeline.resources.warehouse.run_sql(
        "SELECT activity_date, COUNT(*) AS row_count, SUM(active_users) AS active_users, SUM(events) AS events, "
        "SUM(active_users_7d) AS users_7d, SUM(active_users_28d) AS users_28d, SUM(events_7d) AS events_7d, "
        "SUM(events_28d) AS events_28d, SUM(CASE WHEN is_churn_risk = 1 THEN 1 ELSE 0 END) AS churn "
        "FROM analytics.company_daily_activity GROUP BY activity_date"
    )
    return {
        str(r["activity_date"]): {
            "row_count": f"{r['row_count']:,}",
            "active_users": f"{r['active_users']:,}",
            "events": f"{r['events']:,}",
            "active_users_7d_avg": f"{r['users_7d'] / 7:,.1f}",
            "active_users_28d_avg": f"{r['users_28d'] / 28:,.1f}",
            "events_7d_avg": f"{r['events_7d'] / 7:,.1f}",
            "events_28d_avg": f"{r['events_28d'] / 28:,.1f}",
            "churn_risk_companies": f"{r['churn']:,}",
        }
        for r in rows
    }


def warehouse_drops(pipeline: Pipeline, day: dt.date) -> list[tuple[str, str, str]]:
    rows = pipeline.resources.warehouse.run_sql(
        "SELECT company_id, events_prev_7d, events_7d FROM analytics.company_daily_activity "
        "WHERE activity_date = @d AND events_7d < events_prev_7d",
        {"d": day},
    )
    rows.sort(key=lambda r: (-(r["events_prev_7d"] - r["events_7d"]), r["company_id"]))
    return [(r["company_id"], f"{r['events_prev_7d']:,}", f"{r['events_7d']:,}") for r in rows[:10]]


# ---- the test ----------------------------------------------------------------------------------
def test_the_run_report_opens_offline_in_chromium_draws_every_chart_and_prints_the_warehouse_numbers(
    make_pipeline: PipelineFactory, browser: Browser, tmp_path: Path
) -> None:
    pipeline = make_pipeline(companies=15, days=14)  # two full weeks: week-over-week drops exist
    pipeline.run_everything()
    last = max(pipeline.rows_per_date())

    written = write_report(
        pipeline.resources.warehouse,
        pipeline.dates[0],
        pipeline.dates[-1],
        tmp_path / "report",
        now=dt.datetime.now(dt.UTC),
        freshness_deadline_hours=pipeline.settings.freshness_deadline_hours,
    )
    page = open_report(browser, written.html, tmp_path / "report" / "screenshot.png")

    # Self-contained and quiet: nothing fetched from a network, no script, no console error.
    assert [u for u in requested_urls(browser) if not u.startswith(("file:", "data:"))] == []
    assert page["scripts"] == 0
    assert console_errors(browser) == []

    # Every chart is there, titled, and drew pixels (measured on the screenshot, not the markup).
    expected_titles = [t.format(last=last) for t in CHART_TITLES]
    assert [c["title"] for c in page["charts"]] == expected_titles
    assert {"Company activity report", "Open data-quality failures"} <= set(page["headings"])
    screenshot = Image.open(tmp_path / "report" / "screenshot.png")
    assert drawn(screenshot)
    for chart in page["charts"]:
        left, top, width, height = chart["box"]
        assert width > 600 and height > 150, chart
        assert chart["marks"] > 20, chart
        assert drawn(screenshot.crop((int(left), int(top), int(left + width), int(top + height)))), chart["title"]
    assert len(written.pngs) == len(CHART_TITLES)
    for png in written.pngs:
        assert drawn(Image.open(io.BytesIO(png.read_bytes()))), png.name

    # The numbers printed are those of the warehouse; the bad CRM file's day is shown unbuilt.
    expected_days = warehouse_days(pipeline)
    shown_built = {
        day: {k: v for k, v in m.items() if k in expected_days.get(day, {})}
        for day, m in page["days"].items()
        if m["built"]
    }
    assert shown_built == expected_days
    assert page["days"][str(pipeline.sample.bad_date)]["built"] is False
    last_records = pipeline.api.dataset.records(last)
    assert page["days"][str(last)]["events"] == f"{sum(r['events'] for r in last_records):,}"
    assert [(d["company"], d["events_prev_7d"], d["events_7d"]) for d in page["drops"]] == warehouse_drops(
        pipeline, last
    )
    assert page["drops"], "the sample has companies whose events fell"
