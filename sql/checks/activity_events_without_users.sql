-- Check: activity_events_without_users (severity: warn).
-- Purpose: analytics rows of the date with events but no active users: possible (background
--   or API-key traffic) but usually an upstream counting problem, so it warns, never fails.
-- Grain: one summary row for @check_date: observed_value = offending rows,
--   reference_value = all rows of the date.
-- Parameters: @check_date (DATE).
WITH

date_rows AS (
    SELECT
        active_users,
        events
    FROM analytics.company_daily_activity
    WHERE activity_date = CAST(@check_date AS DATE)
),

counted AS (
    SELECT
        COUNT(*) AS all_rows,
        SUM(CASE WHEN events > 0 AND active_users = 0 THEN 1 ELSE 0 END) AS suspicious_rows
    FROM date_rows
)

SELECT
    CAST(COALESCE(suspicious_rows, 0) AS FLOAT) AS observed_value,
    CAST(0 AS FLOAT) AS threshold,
    CAST(COALESCE(suspicious_rows, 0) AS BIGINT) AS offending_rows,
    CASE WHEN suspicious_rows > 0 THEN 1 ELSE 0 END AS is_violation,
    CAST(all_rows AS FLOAT) AS reference_value,
    CAST(NULL AS NVARCHAR(200)) AS note
FROM counted;
