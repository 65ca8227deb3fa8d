-- Purpose: bring agg.company_daily_events up to the rows loaded into agg.fact_events up to
--   @loaded_through, so dashboards read one small row per company-day instead of scanning raw
--   events. The cost follows the rows loaded, not history. Rows loaded after @recount_after
--   (the look-back before the last watermark) are the only ones read by load time, in two parts:
--   - the new rows (loaded after @watermark): a new row was loaded after every row already
--     counted, so it is never the earlier copy of one and cannot change another row's count; the
--     first copies among them are added to their company-days' stored counts (increments);
--   - the look-back band (loaded in (@recount_after, @watermark]): a concurrent loader may have
--     committed such a row after the last refresh moved the watermark past its load time, so the
--     company-days the band touches are recounted whole. A band row can only be the earlier copy
--     of a row loaded after it, itself in the band or new, so no other company-day can change.
--   Only company-days whose count changes are written, so the transaction's log stays small: on
--   DuckDB a log beyond checkpoint_threshold (16 MiB) would checkpoint at commit.
--   Limit (README "The events rollup"): a row committed more than the look-back behind the
--   watermark is never counted; a refresh with a longer look-back recounts it.
-- De-duplication: an event_id counts once, on the day of its first delivered copy (earliest
--   loaded_at, then earliest event_ts, then lowest company_id); identical re-deliveries (loaded
--   together, so both new or both already counted) are counted once by COUNT(DISTINCT event_id).
--   Copies are matched within @dedup_window_days days of each other's UTC day (as Amplitude's
--   insert_id, or Segment's messageId within a day): two copies further apart count as two
--   events. Unbounded, each refresh would look the event ids of its rows up in the whole
--   history, which DuckDB can only do by reading every event_id ever loaded; bounded, the
--   look-up reads the days from @copies_from to @copies_through (the touched days widened by the
--   window), which zone maps (DuckDB) and ix_fact_events_event's seek plus a date residual
--   (Azure SQL) keep small.
-- Days are UTC days: event_date is the UTC day of event_ts, set by the loader.
-- Grain: one row per (activity_date, company_id) with at least one event.
-- Parameters: @run_id, @now (DATETIME2, UTC: refreshed_at, the time the row's count last
--   changed), @rollup_name, @watermark (DATETIME2 or NULL: the last refresh's; NULL: every
--   company-day is recounted), @recount_after (DATETIME2 or NULL: @watermark minus the
--   look-back), @loaded_through (DATETIME2: the new watermark), @dedup_window_days (INT),
--   @copies_from and @copies_through (DATE: the first touched day minus the window, the last
--   plus it). agg.company_daily_events_refresh_days lists for @run_id the days with recounted
--   company-days (the band's days).
-- Measured (bench/events_rollup_bench.py, README Performance): one new day of 100M events reads
--   the day's loads by load time plus the recounted company-days' days, instead of recounting
--   the whole look-back days: 0.42-0.50 s CPU per refresh where the whole-day recount took
--   0.65-0.87 s (warm, same machine state). Where a warm refresh's time goes (statements
--   alternated and rolled back): the de-duplication anti-join is about half its CPU (0.25 of
--   0.54 CPU-s; counting without it 0.28): a hash probe of every copy's event_id (2.5M rows)
--   that a BIGINT hash key of event_id cheapens by 0-25 % only (it still needs the event_id
--   check; measured on the same rows, two runs) - not worth a schema change and a backfill.
--   Also measured and not kept (fifth round, CPU-s medians of 5, alternated in one process):
--   reading only event_id and event_date of the copies first and the full rule for the ids
--   with another copy 0.45 vs 0.33 (event_id is decompressed twice); the copies of the sparse
--   days (the ten-day-old re-deliveries) in a second UNION ALL branch filtered by their ids,
--   zone maps kept, 0.35 vs 0.33 (DuckDB still decompresses every event_id of those days to
--   apply the filter); the copies without company_id, ties on load time and timestamp checked
--   against the rows read by load time and the recounted days' rows, 0.30-0.32 vs 0.31-0.32.
--   The work table costs no log: its rows are inserted and deleted in one transaction.

-- 1. Count, compare, and keep the changes in the work table.
WITH

-- The rows loaded since the look-back before the watermark: the last row groups on DuckDB
-- (rows are appended in load order), ix_fact_events_loaded_rows on Azure SQL.
recent_rows AS (
    SELECT
        recent.event_id,
        recent.company_id,
        recent.event_date,
        recent.event_ts,
        recent.loaded_at
    FROM agg.fact_events AS recent
    WHERE
        (@recount_after IS NULL OR recent.loaded_at > CAST(@recount_after AS DATETIME2))
        AND recent.loaded_at <= CAST(@loaded_through AS DATETIME2)
),

recounted_company_days AS (
    SELECT DISTINCT
        event_date AS activity_date,
        company_id
    FROM recent_rows
    WHERE @watermark IS NULL OR loaded_at <= CAST(@watermark AS DATETIME2)
),

-- The rows to count: the new rows of the other company-days, and every event loaded up to
-- @loaded_through of the recounted ones (read by day: zone maps, ix_fact_events_date). The
-- recounted company-days are a semi-join (EXISTS), not an inner join: DuckDB then estimates
-- these rows below the copies and builds the anti-join's hash table on them (~150k rows at 100M
-- events) instead of on the copies (~2.5M).
day_events AS (
    SELECT
        new_rows.event_id,
        new_rows.company_id,
        new_rows.event_date,
        new_rows.event_ts,
        new_rows.loaded_at
    FROM recent_rows AS new_rows
    WHERE
        NOT EXISTS (
            SELECT 1
            FROM recounted_company_days AS recounted
            WHERE recounted.activity_date = new_rows.event_date AND recounted.company_id = new_rows.company_id
        )
    UNION ALL
    SELECT
        events.event_id,
        events.company_id,
        events.event_date,
        events.event_ts,
        events.loaded_at
    FROM agg.fact_events AS events
    WHERE
        events.loaded_at <= CAST(@loaded_through AS DATETIME2)
        AND events.event_date IN (
            SELECT refresh.activity_date
            FROM agg.company_daily_events_refresh_days AS refresh
            WHERE refresh.run_id = @run_id
        )
        AND EXISTS (
            SELECT 1
            FROM recounted_company_days AS recounted
            WHERE recounted.activity_date = events.event_date AND recounted.company_id = events.company_id
        )
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

-- A row counts unless an earlier copy exists within the window: an anti-join written as LEFT
-- JOIN ... IS NULL, which DuckDB runs as one hash join (~35 % faster than the correlated NOT
-- EXISTS it decorrelates with an extra DISTINCT) and SQL Server as an anti semi join all the same.
-- (Semi-joining the copies to the rows' event ids first, which DuckDB turns into a Bloom filter
-- in the scan, measured no faster: the scan still reads every event_id of the days.)
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

counted AS (
    SELECT
        daily_counts.activity_date,
        daily_counts.company_id,
        daily_counts.event_count,
        CASE WHEN recounted.company_id IS NULL THEN 1 ELSE 0 END AS is_increment
    FROM daily_counts
    LEFT JOIN recounted_company_days AS recounted
        ON daily_counts.activity_date = recounted.activity_date AND daily_counts.company_id = recounted.company_id
),

-- The stored counts of the recounted company-days, to write only those that differ.
stored_rows AS (
    SELECT
        stored.activity_date,
        stored.company_id,
        stored.event_count
    FROM agg.company_daily_events AS stored
    INNER JOIN recounted_company_days AS recounted
        ON stored.activity_date = recounted.activity_date AND stored.company_id = recounted.company_id
    WHERE stored.activity_date IN (
        SELECT refresh.activity_date
        FROM agg.company_daily_events_refresh_days AS refresh
        WHERE refresh.run_id = @run_id
    )
),

-- Every increment (a company-day whose new rows hold no first copy has none), and the recounts
-- that differ. A recount of 0: the company-day is in the rollup but none of its events counts
-- any more (their first copy, committed late in the band, is on another day): the merge
-- deletes it.
changes AS (
    SELECT
        COALESCE(counted.activity_date, stored_rows.activity_date) AS activity_date,
        COALESCE(counted.company_id, stored_rows.company_id) AS company_id,
        COALESCE(counted.event_count, 0) AS event_count,
        COALESCE(counted.is_increment, 0) AS is_increment
    FROM counted
    FULL OUTER JOIN stored_rows
        ON counted.activity_date = stored_rows.activity_date AND counted.company_id = stored_rows.company_id
    WHERE
        counted.is_increment = 1
        OR counted.event_count IS NULL
        OR stored_rows.event_count IS NULL
        OR counted.event_count <> stored_rows.event_count
)

INSERT INTO agg.company_daily_events_refresh_counts (run_id, activity_date, company_id, event_count, is_increment)
SELECT
    @run_id AS run_id,
    activity_date,
    company_id,
    event_count,
    is_increment
FROM changes;

-- 2. Merge the changes in: company-days that exist are updated in place (their key, and so the
--    primary key's index, untouched), new ones inserted, vanished ones (a recount of 0) deleted.
--    The delete is rare: on DuckDB it loads the key's whole index (sql/schema/0013_agg_refresh_counts.sql).
--    Why a work table, not one MERGE using the changes CTE: DuckDB then scans the whole rollup
--    (55M rows, ~10 s) to join it, and with the target bounded to the touched days it measured
--    no faster than these two statements (0.59 vs 0.58 CPU-s).
MERGE INTO agg.company_daily_events AS target
USING (
    SELECT
        activity_date,
        company_id,
        event_count,
        is_increment
    FROM agg.company_daily_events_refresh_counts
    WHERE run_id = @run_id
) AS source
    ON target.activity_date = source.activity_date AND target.company_id = source.company_id
WHEN MATCHED AND source.is_increment = 0 AND source.event_count = 0 THEN DELETE
WHEN MATCHED THEN UPDATE SET
    target.event_count = CASE
        WHEN source.is_increment = 1 THEN target.event_count + source.event_count
        ELSE source.event_count
    END,
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
