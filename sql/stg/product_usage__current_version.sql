-- Purpose: the version (content hash) of the usage currently staged for one date, so an
--   identical re-pull leaves the staging tables untouched (same rows, same provenance).
-- Grain: at most one row (stg.usage_pulls is one row per activity_date).
-- Parameters: @activity_date.

SELECT
    activity_date,
    content_hash,
    staged_row_count
FROM stg.usage_pulls
WHERE activity_date = @activity_date;
