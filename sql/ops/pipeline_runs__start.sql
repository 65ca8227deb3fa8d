-- Purpose: record the start of one pipeline step (one row per run_id + step); its heartbeat
--   starts now (see pipeline_runs__heartbeat.sql).
-- Parameters: @run_id, @step, @run_date, @trigger_name, @started_at.
INSERT INTO ops.pipeline_runs (run_id, step, run_date, status, trigger_name, started_at, heartbeat_at)
VALUES (@run_id, @step, @run_date, 'running', @trigger_name, @started_at, @started_at);
