-- Check: activity_negative_counts (severity: fail).
-- Purpose: counts in the analytics rows of the date are impossible: a negative day, 7-day or
--   28-day count, more active days than a window has days (7, 28) or more in the 7-day window
--   than in the 28-day one, or a negative days_since_last_activity. The 28-day columns are NULL
--   in rows built before migration 0007: NULL is not impossible, only unfilled.
-- Grain: one summary row for @check_date: observed_value = offending rows.
-- Parameters: @check_date (DATE).
WITH

date_rows AS (
    SELECT
        active_users,
        events,
        active_users_7d,
        events_7d,
        active_days_7d,
        active_users_28d,
        events_28d,
        active_days_28d,
        events_prev_7d,
        days_since_last_activity
    FROM analytics.company_daily_activity
    WHERE activity_date = CAST(@check_date AS DATE)
),

impossible_rows AS (
    SELECT active_users
    FROM date_rows
    WHERE
        active_users < 0
        OR events < 0
        OR active_users_7d < 0
        OR events_7d < 0
        OR active_days_7d < 0
        OR active_days_7d > 7
        OR active_users_28d < 0
        OR events_28d < 0
        OR events_prev_7d < 0
        OR active_days_28d < 0
        OR active_days_28d > 28
        OR active_days_7d > active_days_28d
        OR days_since_last_activity < 0
)

SELECT
    CAST(COUNT(*) AS FLOAT) AS observed_value,
    CAST(0 AS FLOAT) AS threshold,
    CAST(COUNT(*) AS BIGINT) AS offending_rows,
    CASE WHEN COUNT(*) > 0 THEN 1 ELSE 0 END AS is_violation,
    CAST(NULL AS FLOAT) AS reference_value,
    CAST(NULL AS NVARCHAR(200)) AS note
FROM impossible_rows;
