-- Purpose: the most recent pipeline steps, newest first (operator CLI "runs"), optionally only
--   those of one date, one step and/or one status.
-- Grain: one row per recorded step (run_id, step, run_date).
-- Parameters: @run_date (DATE or NULL for every date), @step (NVARCHAR or NULL),
--   @status (NVARCHAR or NULL), @limit (INT).
SELECT TOP (@limit)
    run_id,
    step,
    run_date,
    status,
    trigger_name,
    rows_in,
    rows_out,
    started_at,
    finished_at,
    duration_ms,
    error_type,
    error_message
FROM ops.pipeline_runs
WHERE
    (@run_date IS NULL OR run_date = CAST(@run_date AS DATE))
    AND (@step IS NULL OR step = @step)
    AND (@status IS NULL OR status = @status)
ORDER BY started_at DESC, run_id DESC, step ASC;
