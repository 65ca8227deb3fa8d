-- Purpose: forget the input versions one build (run_id) loaded into ops.date_builds_landing
--   (before loading them, so a retried run starts clean, and after recording them).
-- Grain: deletes the rows of one run_id.
-- Parameters: @run_id.
DELETE FROM ops.date_builds_landing
WHERE run_id = @run_id;
