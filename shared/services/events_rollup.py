"""Fact-events rollup: raw events (agg.fact_events) into agg.company_daily_events, incrementally.

Dashboards that counted raw events per company-day scanned the whole event table; the rollup
keeps one row per company-day instead and refreshes only what changed, reading rows by load
time from the watermark (agg.rollup_watermarks) minus a look-back:

- rows loaded since the last refresh add their first copies to their company-days' counts: a
  new row was loaded after every row already counted, so it can change no other count, and
- the company-days touched by rows loaded within ``lookback`` before the watermark are recounted
  whole: a concurrent loader may have committed such a row after the last refresh moved the
  watermark past its load time, which no load-time comparison can tell from rows already counted.
  A row committed further behind than that is never counted (a refresh with a longer look-back,
  e.g. ``events refresh --lookback-minutes``, recounts it).

Only company-days whose count changed are written. Events are de-duplicated by event_id (the
first delivered copy counts; copies are matched within ``DEDUP_WINDOW_DAYS`` of each other, so
a refresh reads the days around the ones it counts on, never the whole history) and counted on
their UTC day: ``load_fact_events`` converts timestamps with an offset to UTC and takes the day
from that, so an event at 23:30-02:00 belongs to the next UTC day.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from shared.adapters.warehouse.base import Row, Warehouse
from shared.clock import naive_utc
from shared.errors import RejectedInput
from shared.logs import log_context
from shared.services.alerts import AlertSink, failure_alert, send_safely
from shared.services.run_history import record_run

log = logging.getLogger(__name__)

ROLLUP_NAME = "company_daily_events"
# Copies of an event_id further apart than this (UTC days) count as two events. Producers
# re-deliver within minutes or hours; a week is Amplitude's insert_id window.
DEDUP_WINDOW_DAYS = 7
_FACT_COLUMNS = ("event_id", "company_id", "event_ts", "event_date", "loaded_at")
# An hourly load (thousands of rows, fewer than a DuckDB row group) goes through DuckDB's
# write-ahead log, which a checkpoint later writes into the file. DuckDB runs it at the first
# commit whose estimated write would take the log past 16 MiB: in practice the refresh's, as it
# writes a day's company-days (~75k: 2.7 MiB of log, estimated at 6.5 MiB or more) after a
# day's loads left ~7 MiB, so the refresh paid for writing out the loads' rows (0.3-0.5 s). A
# load that leaves more than this in the log writes it out itself (Warehouse.write_out_log;
# nothing on Azure SQL). Measured (bench/events_rollup_bench.py): at 4 MiB no refresh
# checkpointed and the loads did about twice a day; at 8 MiB the loads did once a day but 2
# refreshes of 4 still did.
LOAD_LOG_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class RefreshResult:
    days: list[dt.date]  # the days whose company-days were counted (increments or recounts)
    loaded_through: dt.datetime | None  # the new watermark


def utc_event_time(value: str | dt.datetime) -> dt.datetime:
    """An event timestamp as naive UTC: offsets converted, naive values taken as UTC."""
    if isinstance(value, str):
        text = value.strip()
        try:
            parsed = dt.datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
        except ValueError:
            raise RejectedInput("event timestamp is not ISO-8601") from None
    else:
        parsed = value
    return naive_utc(parsed)


def load_fact_events(
    warehouse: Warehouse, events: Iterable[tuple[str, str, str | dt.datetime]], loaded_at: dt.datetime
) -> int:
    """Append raw (event_id, company_id, timestamp) events, streaming; duplicates are kept
    (the refresh de-duplicates). A load that leaves more than LOAD_LOG_BYTES in DuckDB's log
    writes it out before returning. Returns the number of rows loaded."""

    def rows() -> Iterable[tuple[object, ...]]:
        for event_id, company_id, timestamp in events:
            event_ts = utc_event_time(timestamp)
            yield (event_id, company_id, event_ts, event_ts.date(), loaded_at)

    loaded = warehouse.bulk_load("agg.fact_events", _FACT_COLUMNS, rows())
    warehouse.write_out_log(LOAD_LOG_BYTES)
    return loaded


def recount_from(watermark: dt.datetime | None, lookback: dt.timedelta) -> dt.datetime | None:
    """The load time after which rows are read: ``lookback`` before the watermark, or None (every
    row) before the first refresh."""
    return None if watermark is None else watermark - lookback


def refresh_company_daily_events(
    warehouse: Warehouse,
    run_id: str,
    now: dt.datetime,
    lookback: dt.timedelta,
    rollup_name: str = ROLLUP_NAME,
    *,
    dry_run: bool = False,
) -> RefreshResult:
    """Count the rows loaded since the watermark onto the rollup, recount the company-days of
    rows loaded within ``lookback`` before it, and move the watermark forward. ``days`` are the
    days of those rows; ``dry_run`` returns them and writes nothing."""
    now = naive_utc(now)
    with log_context(run_id=run_id, step="events_rollup"):
        (watermark,) = warehouse.run("agg/rollup_watermarks__loaded_through", {"rollup_name": rollup_name})
        previous = watermark["loaded_through"]
        (newest,) = warehouse.run("agg/fact_events__loaded_through", {"loaded_after": previous})
        loaded_through = newest["loaded_through"] or previous
        recount_after = recount_from(previous, lookback)
        touched: list[Row] = []
        if loaded_through is not None:
            touched = warehouse.run(
                "agg/fact_events__touched_days",
                {"recount_after": recount_after, "watermark": previous, "loaded_through": loaded_through},
            )
        days = [row["activity_date"] for row in touched]
        if dry_run or not days:
            return RefreshResult(days, loaded_through)
        recounted = [row["activity_date"] for row in touched if row["recounted"]]
        with warehouse.transaction():
            warehouse.bulk_load(
                "agg.company_daily_events_refresh_days", ("run_id", "activity_date"), ((run_id, d) for d in recounted)
            )
            window = dt.timedelta(days=DEDUP_WINDOW_DAYS)
            warehouse.run(
                "agg/company_daily_events__refresh",
                {
                    "run_id": run_id,
                    "now": now,
                    "rollup_name": rollup_name,
                    "watermark": previous,
                    "recount_after": recount_after,
                    "loaded_through": loaded_through,
                    "dedup_window_days": DEDUP_WINDOW_DAYS,
                    "copies_from": days[0] - window,
                    "copies_through": days[-1] + window,
                },
            )
        log.info("events rollup counted rows on %d day(s), recounting company-days on %d", len(days), len(recounted))
        return RefreshResult(days, loaded_through)


STEP = "events_rollup"


def refresh_on_schedule(
    warehouse: Warehouse, alerts: AlertSink, pipeline: str, run_id: str, now: dt.datetime, lookback: dt.timedelta
) -> RefreshResult | None:
    """The scheduled refresh (after each usage tick): recorded in ops, alerted on failure, never
    raised — the usage the tick staged must not be undone or retried because of the rollup."""
    try:
        with record_run(warehouse, step=STEP, run_id=run_id, run_date=now.date()) as run:
            result = refresh_company_daily_events(warehouse, run_id, now, lookback)
            run.rows_out = len(result.days)
            return result
    except Exception as exc:
        log.exception("events rollup failed")
        send_safely(alerts, failure_alert(pipeline, STEP, exc, run_id=run_id))
        return None
