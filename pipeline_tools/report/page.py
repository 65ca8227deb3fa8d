"""The report's HTML page: one Jinja2 template (report.html.j2), autoescaped, no script.

Numbers in tables carry ``data-day``/``data-metric`` attributes so that a test (or a curious
analyst) can read them back exactly as printed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from pipeline_tools.report.charts import Chart
from pipeline_tools.report.data import ReportData

_ENV = Environment(
    loader=FileSystemLoader(Path(__file__).parent),
    autoescape=select_autoescape(["j2", "html"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def render_page(data: ReportData, charts: Sequence[Chart], *, now: dt.datetime) -> str:
    latest = data.latest
    return _ENV.get_template("report.html.j2").render(
        data=data,
        latest=latest,
        # The SVG is matplotlib's output, which escapes the text it draws (company names included).
        charts=[
            {"name": c.name, "title": c.title, "svg": Markup(c.svg), "about": ABOUT[c.name]}  # noqa: S704
            for c in charts
        ],
        generated_at=now.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        quarantined_days=sum(1 for d in data.days if d.inputs.quarantined_files),
        stale_days=sum(1 for d in data.days if d.crm_stale),
        num=_num,
        pct=_pct,
    )


# What each chart shows and how it is computed, printed under its title.
ABOUT = {
    "active_users": (
        "Bars: active users summed over all companies of the day (the API counts users per day, so these are "
        "user-days). Lines: the daily average over the last 7 and 28 calendar days, i.e. the sum of the "
        "rows' active_users_7d divided by 7 and of active_users_28d divided by 28; missing days count as 0, "
        "so the lines start low where the history is shorter than the window."
    ),
    "events": (
        "Bars: events summed over all companies of the day. Lines: sum of events_7d / 7 and events_28d / 28, "
        "the daily average over the last 7 and 28 calendar days."
    ),
    "churn_risk": (
        "Companies flagged is_churn_risk: no usage on each of the 7 days D-6..D, known since D-6 or earlier."
    ),
    "rows_and_checks": (
        "Top: analytics rows the day holds (one per company of the day). Bottom: the day's data-quality checks "
        "whose latest result failed, errored or warned (ops.data_quality_results)."
    ),
    "input_freshness": (
        "When each input of a day was staged, in hours after that UTC day ended, against the freshness "
        "deadline. Shaded days were built with an older CRM snapshot (crm_stale); a cross marks a day whose "
        "CRM file was quarantined; hollow marks at the bottom are inputs that never arrived. A backfill stages "
        "old days late on purpose: read the lag of recent days."
    ),
    "week_over_week_drops": (
        "On the last built day: companies whose events of the last 7 days (events_7d) fell most against "
        "the 7 days before (events_prev_7d); the label is events_7d_change_pct."
    ),
}


def _num(value: Any, digits: int = 0) -> str:
    if value is None:
        return "–"
    return f"{float(value):,.{digits}f}"


def _pct(value: Any) -> str:
    return "–" if value is None else f"{float(value):+.1f} %"
