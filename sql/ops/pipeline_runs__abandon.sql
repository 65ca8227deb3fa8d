-- Purpose: mark one stale running step 'abandoned' (its process died without finishing it). The
--   status condition makes a step that finished in the meantime keep its own outcome.
-- Grain: the running row of one (run_id, step).
-- Parameters: @run_id, @step, @finished_at, @error_message.
UPDATE ops.pipeline_runs
SET
    status = 'abandoned',
    finished_at = @finished_at,
    error_type = 'Abandoned',
    error_message = @error_message
WHERE run_id = @run_id AND step = @step AND status = 'running';
