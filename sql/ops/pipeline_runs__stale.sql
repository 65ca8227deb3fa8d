-- Purpose: running steps whose heartbeat is older than the lease: their process was killed
--   (a live step refreshes its heartbeat well within the lease). Rows from before migration 0008
--   have no heartbeat and are judged by their start.
-- Grain: one row per stale (run_id, step).
-- Parameters: @stale_before (DATETIME2: now minus RUN_LEASE_MINUTES, computed by the caller).
SELECT
    run_id,
    step,
    run_date,
    trigger_name,
    started_at,
    COALESCE(heartbeat_at, started_at) AS last_heartbeat_at
FROM ops.pipeline_runs
WHERE status = 'running' AND COALESCE(heartbeat_at, started_at) < @stale_before
ORDER BY started_at, run_id, step;
