-- Purpose: the refresh's read bounds: the newest load time in agg.fact_events (the next
--   watermark) and the watermark the previous refresh left.
-- Grain: one row.
-- Parameters: @rollup_name.
SELECT
    (SELECT MAX(loaded_at) FROM agg.fact_events) AS loaded_through,
    (
        SELECT MAX(loaded_through) FROM agg.rollup_watermarks
        WHERE rollup_name = @rollup_name
    ) AS previous_loaded_through;
