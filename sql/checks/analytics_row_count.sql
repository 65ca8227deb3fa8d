-- Check: analytics_row_count (severity: fail).
-- Purpose: a built date must have analytics rows; zero rows means the build lost its spine.
-- Grain: one summary row for @check_date (every check file returns exactly one row:
--   observed_value, threshold, offending_rows, is_violation, reference_value, note).
-- Parameters: @check_date (DATE).
WITH

date_rows AS (
    SELECT COUNT(*) AS row_count
    FROM analytics.company_daily_activity
    WHERE activity_date = CAST(@check_date AS DATE)
)

SELECT
    CAST(row_count AS FLOAT) AS observed_value,
    CAST(0 AS FLOAT) AS threshold,
    CAST(NULL AS BIGINT) AS offending_rows,
    CASE WHEN row_count > 0 THEN 0 ELSE 1 END AS is_violation,
    CAST(NULL AS FLOAT) AS reference_value,
    CAST(NULL AS NVARCHAR(200)) AS note
FROM date_rows;
