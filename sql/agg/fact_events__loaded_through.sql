-- Purpose: the refresh's next watermark: the newest load time in agg.fact_events after
--   @loaded_after (the watermark the previous refresh left; NULL: none yet). NULL when nothing
--   was loaded since. Bounded below so only the rows loaded since are read (rows are appended
--   in load order: DuckDB's zone maps skip the rest; ix_fact_events_loaded_rows on Azure SQL).
-- Grain: one row.
-- Parameters: @loaded_after (DATETIME2 or NULL).
SELECT MAX(loaded_at) AS loaded_through
FROM agg.fact_events
WHERE @loaded_after IS NULL OR loaded_at > CAST(@loaded_after AS DATETIME2);
