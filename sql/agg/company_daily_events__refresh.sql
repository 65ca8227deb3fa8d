-- Purpose: refresh agg.company_daily_events for the days listed for @run_id in
--   agg.company_daily_events_refresh_days (the days touched by rows loaded since the last
--   refresh plus the look-back, chosen by the caller), so dashboards read one small row per
--   company-day instead of scanning raw events. The cost follows the rows loaded, not history:
--   - the look-back days (@lookback_from to @today) are recounted whole: they absorb rows a
--     concurrent loader committed with a load time behind the watermark, which no load-time
--     comparison can tell from rows already counted;
--   - on the other listed days only the company-days that the new rows (loaded_at in
--     (@loaded_after, @loaded_through]) touch are recounted: a new row was loaded after every row
--     already counted, so it is never the earlier copy of one and cannot lower another
--     company-day's count. Ten-day-old re-deliveries in today's loads recount a few company-days,
--     not their whole day.
--   Only company-days whose count changed are written (compared with the stored rows), so the
--   transaction's log stays small: on DuckDB a log beyond checkpoint_threshold (16 MiB) would
--   checkpoint at commit.
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
-- Parameters: @run_id, @now (DATETIME2, UTC: refreshed_at, the time the row's count last
--   changed), @rollup_name, @loaded_after (DATETIME2 or NULL: the last watermark; NULL: every row
--   is new), @loaded_through (DATETIME2 or NULL: the new watermark), @lookback_from and @today
--   (DATE: the look-back), @dedup_window_days (INT), @copies_from and @copies_through (DATE: the
--   first refreshed day minus the window, the last plus it).
-- Measured (bench/events_rollup_bench.py, README Performance): against the whole-day recount
--   merged in full, the recount reads about half the rows and the merge writes only the changes.

-- 1. Recount, compare, and keep the changes in the work table.
WITH

-- The company-days outside the look-back that rows loaded since the last refresh touched (the
-- new rows are found by load time: the last row groups on DuckDB, ix_fact_events_loaded on
-- Azure SQL). Defined once for both reads below: the events recounted and the stored rows
-- compared with them.
touched_company_days AS (
    SELECT DISTINCT
        new_rows.event_date AS activity_date,
        new_rows.company_id
    FROM agg.fact_events AS new_rows
    WHERE
        (@loaded_after IS NULL OR new_rows.loaded_at > CAST(@loaded_after AS DATETIME2))
        AND new_rows.loaded_at <= CAST(@loaded_through AS DATETIME2)
        AND new_rows.event_date NOT BETWEEN CAST(@lookback_from AS DATE) AND CAST(@today AS DATE)
),

-- Every event of the look-back days; on the other listed days, the events of the touched
-- company-days.
day_events AS (
    SELECT
        events.event_id,
        events.company_id,
        events.event_date,
        events.event_ts,
        events.loaded_at
    FROM agg.fact_events AS events
    INNER JOIN agg.company_daily_events_refresh_days AS refresh
        ON
            events.event_date = refresh.activity_date
            AND refresh.run_id = @run_id
            AND refresh.activity_date BETWEEN CAST(@lookback_from AS DATE) AND CAST(@today AS DATE)
    UNION ALL
    SELECT
        events.event_id,
        events.company_id,
        events.event_date,
        events.event_ts,
        events.loaded_at
    FROM agg.fact_events AS events
    INNER JOIN agg.company_daily_events_refresh_days AS refresh
        ON
            events.event_date = refresh.activity_date
            AND refresh.run_id = @run_id
            AND refresh.activity_date NOT BETWEEN CAST(@lookback_from AS DATE) AND CAST(@today AS DATE)
    INNER JOIN touched_company_days AS touched
        ON events.event_date = touched.activity_date AND events.company_id = touched.company_id
),

nearby_copies AS (
    SELECT
        copies.event_id,
        copies.company_id,
        copies.event_date,
        copies.event_ts,
        copies.loaded_at
    FROM agg.fact_events AS copies
    WHERE copies.event_date BETWEEN CAST(@copies_from AS DATE) AND CAST(@copies_through AS DATE)
),

-- A day's event counts unless an earlier copy exists within the window: an anti-join written
-- as LEFT JOIN ... IS NULL, which DuckDB runs as one hash join (~35 % faster than the
-- correlated NOT EXISTS it decorrelates with an extra DISTINCT) and SQL Server as an anti
-- semi join all the same.
first_copies AS (
    SELECT
        day_events.event_id,
        day_events.company_id,
        day_events.event_date
    FROM day_events
    LEFT JOIN nearby_copies AS earlier
        ON
            day_events.event_id = earlier.event_id
            AND earlier.event_date BETWEEN DATEADD(DAY, -@dedup_window_days, day_events.event_date)
            AND DATEADD(DAY, @dedup_window_days, day_events.event_date)
            AND (
                day_events.loaded_at > earlier.loaded_at
                OR (day_events.loaded_at = earlier.loaded_at AND day_events.event_ts > earlier.event_ts)
                OR (
                    day_events.loaded_at = earlier.loaded_at
                    AND day_events.event_ts = earlier.event_ts
                    AND day_events.company_id > earlier.company_id
                )
            )
    WHERE earlier.event_id IS NULL
),

daily_counts AS (
    SELECT
        event_date AS activity_date,
        company_id,
        COUNT(DISTINCT event_id) AS event_count
    FROM first_copies
    GROUP BY event_date, company_id
),

-- The rollup's rows of the same company-days, to write only those whose count differs.
stored_rows AS (
    SELECT
        stored.activity_date,
        stored.company_id,
        stored.event_count
    FROM agg.company_daily_events AS stored
    INNER JOIN agg.company_daily_events_refresh_days AS refresh
        ON
            stored.activity_date = refresh.activity_date
            AND refresh.run_id = @run_id
            AND refresh.activity_date BETWEEN CAST(@lookback_from AS DATE) AND CAST(@today AS DATE)
    UNION ALL
    SELECT
        stored.activity_date,
        stored.company_id,
        stored.event_count
    FROM agg.company_daily_events AS stored
    INNER JOIN agg.company_daily_events_refresh_days AS refresh
        ON
            stored.activity_date = refresh.activity_date
            AND refresh.run_id = @run_id
            AND refresh.activity_date NOT BETWEEN CAST(@lookback_from AS DATE) AND CAST(@today AS DATE)
    INNER JOIN touched_company_days AS touched
        ON stored.activity_date = touched.activity_date AND stored.company_id = touched.company_id
),

-- A count of 0: the company-day is in the rollup but no longer in the recount (its only events
-- moved to another day by an earlier copy loaded late): rare; the merge deletes it.
changes AS (
    SELECT
        COALESCE(daily_counts.activity_date, stored_rows.activity_date) AS activity_date,
        COALESCE(daily_counts.company_id, stored_rows.company_id) AS company_id,
        COALESCE(daily_counts.event_count, 0) AS event_count
    FROM daily_counts
    FULL OUTER JOIN stored_rows
        ON daily_counts.activity_date = stored_rows.activity_date AND daily_counts.company_id = stored_rows.company_id
    WHERE
        daily_counts.event_count IS NULL
        OR stored_rows.event_count IS NULL
        OR daily_counts.event_count <> stored_rows.event_count
)

INSERT INTO agg.company_daily_events_refresh_counts (run_id, activity_date, company_id, event_count)
SELECT
    @run_id AS run_id,
    activity_date,
    company_id,
    event_count
FROM changes;

-- 2. Merge the changes in: company-days that exist are updated in place (their key, and so the
--    primary key's index, untouched), new ones inserted, vanished ones (count 0) deleted. The
--    delete is rare: on DuckDB it loads the key's whole index (sql/schema/0013_agg_refresh_counts.sql).
MERGE INTO agg.company_daily_events AS target
USING (
    SELECT
        activity_date,
        company_id,
        event_count
    FROM agg.company_daily_events_refresh_counts
    WHERE run_id = @run_id
) AS source
    ON target.activity_date = source.activity_date AND target.company_id = source.company_id
WHEN MATCHED AND source.event_count = 0 THEN DELETE
WHEN MATCHED THEN UPDATE SET
    target.event_count = source.event_count,
    target.refreshed_at = CAST(@now AS DATETIME2),
    target.run_id = @run_id
WHEN NOT MATCHED BY TARGET THEN
    INSERT (activity_date, company_id, event_count, refreshed_at, run_id)
    VALUES (source.activity_date, source.company_id, source.event_count, CAST(@now AS DATETIME2), @run_id);

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

DELETE FROM agg.company_daily_events_refresh_counts
WHERE run_id = @run_id;
