-- Purpose: close the running row of one pipeline step with its outcome.
-- Parameters: @run_id, @step, @status, @rows_in, @rows_out, @finished_at, @duration_ms,
-- @error_type, @error_message (already redacted by the caller).
UPDATE ops.pipeline_runs
SET
    status = @status,
    rows_in = @rows_in,
    rows_out = @rows_out,
    finished_at = @finished_at,
    duration_ms = @duration_ms,
    error_type = @error_type,
    error_message = @error_message
WHERE run_id = @run_id AND step = @step AND status = 'running';
