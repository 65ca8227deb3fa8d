"""The run report's charts, drawn with matplotlib: each one as inline SVG and as a PNG.

Figures are built on ``matplotlib.figure.Figure`` directly (no pyplot): no global state, no GUI
backend, safe in a worker thread. SVG text stays text (``svg.fonttype: none``) so the page is
small and its titles are searchable; ids are salted with a constant so the same data gives the
same file.
"""

from __future__ import annotations

import datetime as dt
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import matplotlib
import matplotlib.dates as mdates
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullLocator

from pipeline_tools.report.data import Day, ReportData

NAN = math.nan
MAX_LABELLED_BARS = 62
INK, MUTED, GRID = "#1f2933", "#616e7c", "#e4e7eb"
BLUE, BLUE_LIGHT, ORANGE, PURPLE = "#2563eb", "#bfdbfe", "#ea580c", "#7c3aed"
RED, DARK_RED, AMBER, GREEN, GREY = "#dc2626", "#7f1d1d", "#f59e0b", "#16a34a", "#9aa5b1"
STYLE = {
    "svg.fonttype": "none",
    "svg.hashsalt": "company-activity-report",
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.edgecolor": GRID,
    "axes.labelcolor": MUTED,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.titlecolor": INK,
    "axes.titlelocation": "left",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.grid.axis": "y",
    "grid.color": GRID,
    "xtick.color": MUTED,
    "ytick.color": MUTED,
    "legend.frameon": False,
    "legend.fontsize": 8,
}


@dataclass(frozen=True)
class Chart:
    """One drawn chart: its file-friendly name, title, and the two renderings."""

    name: str
    title: str
    svg: str
    png: bytes


def draw_charts(data: ReportData, freshness_deadline_hours: float) -> list[Chart]:
    """Every chart of the report, in page order."""
    makers: list[tuple[str, str, Callable[[Figure], None]]] = [
        ("active_users", "Active users per day", lambda fig: _activity(fig, data.days, "users")),
        ("events", "Events per day", lambda fig: _activity(fig, data.days, "events")),
        ("churn_risk", "Companies at churn risk per day", lambda fig: _churn_risk(fig, data.days)),
        (
            "rows_and_checks",
            "Rows built and data-quality findings per day",
            lambda fig: _rows_and_checks(fig, data.days),
        ),
        (
            "input_freshness",
            "Input arrival and freshness per day",
            lambda fig: _input_freshness(fig, data.days, freshness_deadline_hours),
        ),
        ("week_over_week_drops", _drops_title(data), lambda fig: _drops(fig, data)),
    ]
    charts = []
    with matplotlib.rc_context(STYLE):
        for name, title, draw in makers:
            height = 1.4 + 0.42 * len(data.drops) if name == "week_over_week_drops" else 3.6
            fig = Figure(figsize=(10, max(height, 2.5)), layout="constrained")
            draw(fig)
            svg = _svg(fig)  # the page prints the title above it; a PNG pasted alone needs its own
            fig.suptitle(title, x=0.01, ha="left", fontsize=12, fontweight="bold", color=INK)
            charts.append(Chart(name, title, svg, _png(fig)))
    return charts


def _drops_title(data: ReportData) -> str:
    as_of = f" (as of {data.drops_as_of})" if data.drops_as_of else ""
    return f"Largest week-over-week drops in events{as_of}"


# ---- the charts ------------------------------------------------------------------------------
def _activity(fig: Figure, days: Sequence[Day], what: str) -> None:
    ax = fig.add_subplot()
    x = [d.day for d in days]

    def value(day: Day, attr: str) -> float:
        number = None if day.activity is None else getattr(day.activity, attr)
        return NAN if number is None else float(number)

    daily, avg7, avg28 = (
        ("active_users", "active_users_7d_avg", "active_users_28d_avg")
        if what == "users"
        else ("events", "events_7d_avg", "events_28d_avg")
    )
    label = "active users (user-days)" if what == "users" else "events"
    ax.bar(x, [value(d, daily) for d in days], width=0.8, color=BLUE_LIGHT, label=f"daily total {label}")
    ax.plot(x, [value(d, avg7) for d in days], color=BLUE, linewidth=2, label="7-day average (D-6..D)")
    ax.plot(x, [value(d, avg28) for d in days], color=ORANGE, linewidth=2, label="28-day average (D-27..D)")
    _mark_unbuilt(ax, days)
    _date_axis(ax, days)
    ax.yaxis.set_major_formatter(FuncFormatter(_thousands))
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper left", ncols=4, bbox_to_anchor=(0, 1.12))


def _churn_risk(fig: Figure, days: Sequence[Day]) -> None:
    ax = fig.add_subplot()
    x = [d.day for d in days]
    counts = [NAN if d.activity is None else d.activity.churn_risk_companies for d in days]
    bars = ax.bar(x, counts, width=0.8, color=RED, label="companies with no usage on each of D-6..D")
    if len(days) <= MAX_LABELLED_BARS:  # beyond that the labels would overlap; the table has them
        ax.bar_label(bars, fmt=lambda v: "" if math.isnan(v) else f"{v:.0f}", fontsize=7, color=MUTED, padding=1)
    _mark_unbuilt(ax, days)
    _date_axis(ax, days)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(bottom=0, top=max([c for c in counts if not math.isnan(c)] or [0]) * 1.2 + 1)
    ax.legend(loc="upper left", bbox_to_anchor=(0, 1.12))


def _rows_and_checks(fig: Figure, days: Sequence[Day]) -> None:
    rows_ax, checks_ax = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    x = [d.day for d in days]
    rows = [NAN if d.activity is None else d.activity.row_count for d in days]
    rows_ax.bar(x, rows, width=0.8, color=BLUE, label="analytics rows of the day")
    rows_ax.set_ylabel("rows")
    rows_ax.yaxis.set_major_formatter(FuncFormatter(_thousands))
    _mark_unbuilt(rows_ax, days)
    rows_ax.legend(loc="lower left", ncols=2, bbox_to_anchor=(0, 1.0))
    bottom = [0.0] * len(days)
    for status, color in (("fail", RED), ("error", DARK_RED), ("warn", AMBER)):
        heights = [float(d.checks.get(status, 0)) for d in days]
        checks_ax.bar(x, heights, bottom=bottom, width=0.8, color=color, label=f"checks {status}")
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    checks_ax.set_ylabel("checks")
    checks_ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    checks_ax.set_ylim(bottom=0, top=max([*bottom, 1]) * 1.15)
    checks_ax.legend(loc="upper left", ncols=3, bbox_to_anchor=(0, 1.25))
    _date_axis(checks_ax, days)


def _input_freshness(fig: Figure, days: Sequence[Day], deadline_hours: float) -> None:
    ax = fig.add_subplot()
    x = [d.day for d in days]
    # CRM as larger squares under the usage dots: when both arrive together both stay visible.
    for attr, color, marker, size, label in (
        ("crm_hours_after_day_end", PURPLE, "s", 9, "CRM snapshot staged"),
        ("usage_hours_after_day_end", BLUE, "o", 5, "usage staged"),
    ):
        hours = [getattr(d.inputs, attr) for d in days]
        ax.plot(
            x,
            [NAN if h is None else max(h, 0.0) for h in hours],
            marker=marker,
            markersize=size,
            linestyle="none",
            color=color,
            label=label,
        )
    ax.axhline(
        deadline_hours, color=RED, linestyle="--", linewidth=1, label=f"freshness deadline ({deadline_hours:g} h)"
    )
    bottom = ax.get_xaxis_transform()  # x in dates, y in axes fraction
    for d in days:
        if d.crm_stale:
            ax.axvspan(_shifted(d.day, -0.5), _shifted(d.day, 0.5), color=AMBER, alpha=0.25, lw=0)
        if d.inputs.quarantined_files:
            ax.plot([d.day], [0.95], marker="X", markersize=9, color=RED, transform=bottom, linestyle="none")
        if d.inputs.crm_hours_after_day_end is None:
            ax.plot([d.day], [0.03], marker="s", markersize=6, mfc="white", color=PURPLE, transform=bottom)
        if d.inputs.usage_hours_after_day_end is None:
            ax.plot([d.day], [0.08], marker="o", markersize=6, mfc="white", color=BLUE, transform=bottom)
    # Legend entries for the marks drawn per day (drawn once, empty, so they appear once).
    ax.fill_between([], [], color=AMBER, alpha=0.25, label="built with an older CRM snapshot (crm_stale)")
    ax.plot([], [], marker="X", color=RED, linestyle="none", label="CRM file quarantined")
    ax.plot(
        [], [], marker="o", mfc="white", color=GREY, linestyle="none", label="input missing (hollow, at the bottom)"
    )
    # Linear up to a day, logarithmic beyond: a backfill's weeks-late days and today's hours-late
    # days both stay readable against the deadline.
    ax.set_yscale("symlog", linthresh=24, linscale=1.5)
    highest = max([deadline_hours, *(h for d in days for h in _lags(d))])
    ax.set_yticks([t for t in LAG_TICKS if t <= highest * 1.5] or [0, 24])
    ax.yaxis.set_major_formatter(FuncFormatter(_lag_label))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.set_ylim(bottom=0, top=highest * 1.6 + 1)
    ax.set_ylabel("staged after the UTC day ended")
    _date_axis(ax, days)
    ax.legend(loc="upper left", ncols=3, bbox_to_anchor=(0, 1.22))


LAG_TICKS = (0, 6, 12, 24, 48, 96, 168, 336, 720, 1440, 2880, 8760)


def _lags(day: Day) -> list[float]:
    return [h for h in (day.inputs.crm_hours_after_day_end, day.inputs.usage_hours_after_day_end) if h is not None]


def _lag_label(hours: float, _pos: int | None = None) -> str:
    return f"{hours:.0f} h" if hours < 48 else f"{hours / 24:.0f} d"


def _drops(fig: Figure, data: ReportData) -> None:
    ax = fig.add_subplot()
    rows = list(reversed(data.drops))  # largest drop at the top
    if not rows:
        ax.text(
            0.5,
            0.5,
            "no company's events fell week over week",
            ha="center",
            va="center",
            transform=ax.transAxes,
            color=MUTED,
        )
        ax.set_axis_off()
        return
    labels = [f"{r['company_name'] or '(not in CRM)'} · {r['company_id']}" for r in rows]
    y = list(range(len(rows)))
    ax.barh(
        [v + 0.2 for v in y],
        [r["events_prev_7d"] for r in rows],
        height=0.4,
        color=GREY,
        label="events, previous 7 days (D-13..D-7)",
    )
    bars = ax.barh(
        [v - 0.2 for v in y],
        [r["events_7d"] for r in rows],
        height=0.4,
        color=BLUE,
        label="events, last 7 days (D-6..D)",
    )
    ax.bar_label(bars, labels=[_pct(r["events_7d_change_pct"]) for r in rows], fontsize=8, color=RED, padding=3)
    ax.set_yticks(y, labels)
    ax.grid(axis="x", color=GRID)
    ax.grid(axis="y", visible=False)
    ax.xaxis.set_major_formatter(FuncFormatter(_thousands))
    ax.legend(loc="lower left", ncols=2, bbox_to_anchor=(0, 1.0))


# ---- shared pieces ---------------------------------------------------------------------------
def _mark_unbuilt(ax: Axes, days: Sequence[Day]) -> None:
    """A hatched band where a day of the range has no rows: a gap, not a zero."""
    unbuilt = [d.day for d in days if not d.built]
    for day in unbuilt:
        ax.axvspan(
            _shifted(day, -0.5),
            _shifted(day, 0.5),
            facecolor="none",
            edgecolor=GREY,
            hatch="///",
            linewidth=0,
        )
    if unbuilt:
        ax.fill_between([], [], facecolor="none", edgecolor=GREY, hatch="///", label="not built")


def _date_axis(ax: Axes, days: Sequence[Day]) -> None:
    locator = mdates.AutoDateLocator(minticks=4, maxticks=12)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    if days:
        ax.set_xlim(_shifted(days[0].day, -0.7), _shifted(days[-1].day, 0.7))


def _shifted(day: dt.date, days: float) -> dt.datetime:
    """A point ``days`` (fractional) from the day's midnight, where matplotlib draws the day.
    (A date plus a fraction of a day is the same date: the fraction must go on a datetime.)"""
    return dt.datetime.combine(day, dt.time()) + dt.timedelta(days=days)


def _thousands(value: float, _pos: int | None = None) -> str:
    if abs(value) >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if abs(value) >= 10_000:
        return f"{value / 1_000:.0f}k"
    return f"{value:,.0f}"


def _pct(value: object) -> str:
    return "" if value is None else f"{float(value):+.0f} %"  # type: ignore[arg-type]


def _svg(fig: Figure) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # inline: without the XML declaration and DOCTYPE


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=144, facecolor="white")
    return buffer.getvalue()
