-- Purpose: delete one build's rows of the window work table (analytics.company_daily_activity_windows)
--   once its last part has read them.
-- Grain: deletes.
-- Parameters: @run_id (the build's).
DELETE FROM analytics.company_daily_activity_windows
WHERE run_id = @run_id;
