-- Purpose: a running step is still alive (refreshed while it works, so a killed step is told
--   apart from a slow one by the age of its heartbeat).
-- Grain: the running row of one (run_id, step).
-- Parameters: @run_id, @step, @heartbeat_at.
UPDATE ops.pipeline_runs
SET heartbeat_at = @heartbeat_at
WHERE run_id = @run_id AND step = @step AND status = 'running';
