-- Purpose: the UTC days a refresh of agg.company_daily_events counts rows on: the days of the
--   rows loaded into agg.fact_events after @recount_after (the look-back before the watermark;
--   NULL: every row) up to @loaded_through, and whether some company-day of the day is recounted
--   whole (recounted = 1: a row of the day was loaded at or before @watermark, in the look-back
--   band; or there is no watermark yet). On the other days new rows only add to stored counts.
-- Why not also the days of other copies of their event_ids: a copy already counted was loaded
--   at or before @watermark, so it stays earlier than every new row and keeps its day's count;
--   a band row can only be earlier than rows loaded after it, which are band or new rows too.
--   Looking the copies up would read the event_id of the whole history (no index can serve a
--   join on DuckDB), while the load-time range alone is one index range (ix_fact_events_loaded_rows)
--   or a few row groups (DuckDB's zone maps: rows are appended in load order).
-- Grain: one row per activity_date.
-- Parameters: @recount_after, @watermark (DATETIME2 or NULL), @loaded_through (DATETIME2).
SELECT
    event_date AS activity_date,
    MAX(CASE WHEN @watermark IS NULL OR loaded_at <= CAST(@watermark AS DATETIME2) THEN 1 ELSE 0 END) AS recounted
FROM agg.fact_events
WHERE
    (@recount_after IS NULL OR loaded_at > CAST(@recount_after AS DATETIME2))
    AND loaded_at <= CAST(@loaded_through AS DATETIME2)
GROUP BY event_date
ORDER BY activity_date;
