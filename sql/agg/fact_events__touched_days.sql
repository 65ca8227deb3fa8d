-- Purpose: the UTC days a refresh of agg.company_daily_events must recompute because of rows
--   loaded into agg.fact_events after @loaded_after (NULL: every row) up to @loaded_through:
--   the days of those rows.
-- Why not also the days of other copies of their event_ids: a copy already counted was loaded
--   at or before @loaded_after (the last refresh's watermark, its MAX(loaded_at)), so it stays
--   earlier than every new row and keeps its day's count; only the new rows' own days change.
--   Looking those copies up would read the event_id of the whole history (no index can serve a
--   join on DuckDB), while the load-time range alone is one index range (ix_fact_events_loaded)
--   or a few row groups (DuckDB's zone maps: rows are appended in load order).
-- Grain: one row per activity_date.
-- Parameters: @loaded_after (DATETIME2 or NULL), @loaded_through (DATETIME2).
SELECT DISTINCT event_date AS activity_date
FROM agg.fact_events
WHERE
    (@loaded_after IS NULL OR loaded_at > CAST(@loaded_after AS DATETIME2))
    AND loaded_at <= CAST(@loaded_through AS DATETIME2)
ORDER BY activity_date;
