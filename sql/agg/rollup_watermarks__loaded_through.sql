-- Purpose: how far a rollup has read agg.fact_events: the watermark its last refresh left
--   (NULL before the first refresh).
-- Grain: one row.
-- Parameters: @rollup_name.
SELECT MAX(loaded_through) AS loaded_through
FROM agg.rollup_watermarks
WHERE rollup_name = @rollup_name;
