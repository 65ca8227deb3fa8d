-- Purpose: the distinct data_quality_flags values among one date's analytics rows. A date has
--   only a handful of distinct flag lists, so the quality step merges flags per list in code
--   and updates each list with one set-based statement (..._replace_quality_flags).
-- Grain: one row per distinct data_quality_flags value of @activity_date.
-- Parameters: @activity_date (DATE).
SELECT DISTINCT data_quality_flags
FROM analytics.company_daily_activity
WHERE activity_date = CAST(@activity_date AS DATE);
