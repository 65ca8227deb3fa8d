-- Purpose: recompute agg.company_daily_events for the days listed for @run_id in
--   agg.company_daily_events_refresh_days (the touched days plus the look-back, chosen by the
--   caller), so dashboards read one small row per company-day instead of scanning raw events.
--   Only those days are deleted and recounted: the cost follows the days touched, not history.
-- De-duplication: an event_id counts once, on the day of its first delivered copy (earliest
--   loaded_at, then earliest event_ts, then lowest company_id); identical re-deliveries are
--   counted once by COUNT(DISTINCT event_id). Copies are matched within @dedup_window_days
--   days of each other's UTC day (as Amplitude's insert_id, or Segment's messageId within a day):
--   two copies further apart count as two events. Unbounded, each refresh would look the
--   event ids of its days up in the whole history, which DuckDB can only do by reading every
--   event_id ever loaded; bounded, the look-up reads the days from @copies_from to
--   @copies_through (the refreshed days widened by the window), which zone maps (DuckDB) and
--   ix_fact_events_event's seek plus a date residual (Azure SQL) keep small.
-- Days are UTC days: event_date is the UTC day of event_ts, set by the loader.
-- Grain: one row per (activity_date, company_id) with at least one event.
-- Parameters: @run_id, @now (DATETIME2, UTC: refreshed_at), @rollup_name, @loaded_through
--   (DATETIME2 or NULL: the new watermark), @dedup_window_days (INT), @copies_from and
--   @copies_through (DATE: the first refreshed day minus the window, the last plus it).

-- 1. Forget the recomputed days.
DELETE FROM agg.company_daily_events
WHERE activity_date IN (
    SELECT refresh.activity_date
    FROM agg.company_daily_events_refresh_days AS refresh
    WHERE refresh.run_id = @run_id
);

-- 2. Recount them from the raw events.
WITH

refresh_days AS (
    SELECT activity_date
    FROM agg.company_daily_events_refresh_days
    WHERE run_id = @run_id
),

day_events AS (
    SELECT
        events.event_id,
        events.company_id,
        events.event_date,
        events.event_ts,
        events.loaded_at
    FROM agg.fact_events AS events
    INNER JOIN refresh_days ON events.event_date = refresh_days.activity_date
),

first_copies AS (
    SELECT
        day_events.event_id,
        day_events.company_id,
        day_events.event_date
    FROM day_events
    WHERE NOT EXISTS (
        SELECT 1
        FROM agg.fact_events AS earlier
        WHERE
            earlier.event_id = day_events.event_id
            AND earlier.event_date BETWEEN CAST(@copies_from AS DATE) AND CAST(@copies_through AS DATE)
            AND earlier.event_date BETWEEN DATEADD(DAY, -@dedup_window_days, day_events.event_date)
            AND DATEADD(DAY, @dedup_window_days, day_events.event_date)
            AND (
                earlier.loaded_at < day_events.loaded_at
                OR (earlier.loaded_at = day_events.loaded_at AND earlier.event_ts < day_events.event_ts)
                OR (
                    earlier.loaded_at = day_events.loaded_at
                    AND earlier.event_ts = day_events.event_ts
                    AND earlier.company_id < day_events.company_id
                )
            )
    )
),

daily_counts AS (
    SELECT
        event_date AS activity_date,
        company_id,
        COUNT(DISTINCT event_id) AS event_count
    FROM first_copies
    GROUP BY event_date, company_id
)

INSERT INTO agg.company_daily_events (activity_date, company_id, event_count, refreshed_at, run_id)
SELECT
    activity_date,
    company_id,
    event_count,
    CAST(@now AS DATETIME2) AS refreshed_at,
    @run_id AS run_id
FROM daily_counts;

-- 3. Move the watermark (only forward) and clear the work rows.
MERGE INTO agg.rollup_watermarks AS target
USING (
    SELECT
        @rollup_name AS rollup_name,
        CAST(@loaded_through AS DATETIME2) AS loaded_through,
        CAST(@now AS DATETIME2) AS refreshed_at,
        @run_id AS run_id
) AS source
    ON target.rollup_name = source.rollup_name
WHEN MATCHED THEN UPDATE SET
    target.loaded_through = CASE
        WHEN target.loaded_through IS NULL OR source.loaded_through > target.loaded_through
            THEN source.loaded_through
        ELSE target.loaded_through
    END,
    target.refreshed_at = source.refreshed_at,
    target.run_id = source.run_id
WHEN NOT MATCHED BY TARGET THEN
    INSERT (rollup_name, loaded_through, refreshed_at, run_id)
    VALUES (source.rollup_name, source.loaded_through, source.refreshed_at, source.run_id);

DELETE FROM agg.company_daily_events_refresh_days
WHERE run_id = @run_id;
