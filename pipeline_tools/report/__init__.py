"""The analysts' run report: one self-contained HTML page plus PNG charts for a date range.

    write_report(warehouse, start, end, out_dir, now=...)  ->  ReportFiles

Reads the warehouse alone (sql/report/*.sql; no storage, no API), so it runs against any copy
of the warehouse. The page needs no network: charts are inline SVG, styles inline, no script.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path

from pipeline_tools.report.charts import draw_charts
from pipeline_tools.report.data import DEFAULT_TOP_DROPS, load_report_data
from pipeline_tools.report.page import render_page
from shared.adapters.warehouse.base import Warehouse
from shared.rules.dates import last_buildable_date, refuse_future_dates

HTML_NAME = "report.html"

__all__ = ["HTML_NAME", "ReportFiles", "default_range", "write_report"]


@dataclass
class ReportFiles:
    """What one report run wrote."""

    start: dt.date
    end: dt.date
    html: Path
    pngs: list[Path] = field(default_factory=list)
    days: int = 0
    built_days: int = 0
    open_failures: int = 0

    @property
    def empty(self) -> bool:
        return not self.pngs

    def to_dict(self) -> dict[str, object]:
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "html": str(self.html),
            "pngs": [str(p) for p in self.pngs],
            "days": self.days,
            "built_days": self.built_days,
            "open_failures": self.open_failures,
            "empty": self.empty,
        }


def default_range(now: dt.datetime, days: int = 28) -> tuple[dt.date, dt.date]:
    """The last ``days`` days that can be built: ending yesterday (UTC)."""
    end = last_buildable_date(now)
    return end - dt.timedelta(days=days - 1), end


def write_report(
    warehouse: Warehouse,
    start: dt.date,
    end: dt.date,
    out_dir: Path,
    *,
    now: dt.datetime,
    freshness_deadline_hours: float,
    top_drops: int = DEFAULT_TOP_DROPS,
) -> ReportFiles:
    """Write ``out_dir/report.html`` and one PNG per chart; a range with no data gets a page
    that says so and no PNG. Future dates are refused (nothing can be built for them)."""
    if start > end:
        raise ValueError(f"start {start} is after end {end}")
    refuse_future_dates([start, end], now)
    data = load_report_data(warehouse, start, end, top_drops)
    charts = [] if data.is_empty else draw_charts(data, freshness_deadline_hours)

    out_dir.mkdir(parents=True, exist_ok=True)
    pngs = [_replace(out_dir / f"{chart.name}.png", chart.png) for chart in charts]
    html = _replace(out_dir / HTML_NAME, render_page(data, charts, now=now).encode("utf-8"))  # last: complete
    return ReportFiles(start, end, html, pngs, len(data.days), len(data.built_days), len(data.open_failures))


def _replace(path: Path, content: bytes) -> Path:
    """Write beside, then rename over: an interrupted run never leaves a half-written file."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(content)
    os.replace(partial, path)
    return path
