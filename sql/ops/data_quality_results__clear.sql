-- Purpose: remove the results one run stored for one date, so re-running the checks of a run
--   (an at-least-once redelivery) replaces its rows instead of adding to them.
-- Grain: deletes rows of (run_id, check_date).
-- Parameters: @run_id, @check_date (DATE).
DELETE FROM ops.data_quality_results
WHERE run_id = @run_id AND check_date = CAST(@check_date AS DATE);
