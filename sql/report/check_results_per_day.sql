-- Purpose: the data-quality findings of each day for the run report: the latest result of every
--   check of the day (a later run that passed closes an earlier failure), counted by status.
-- Grain: one row per (check_date, status) in the range.
-- Parameters: @date_from, @date_to (inclusive UTC days).
WITH

latest_results AS (
    SELECT
        check_date,
        status,
        ROW_NUMBER() OVER (
            PARTITION BY check_date, check_name ORDER BY checked_at DESC, run_id DESC
        ) AS recency
    FROM ops.data_quality_results
    WHERE check_date BETWEEN @date_from AND @date_to
)

SELECT
    check_date,
    status,
    COUNT(*) AS checks
FROM latest_results
WHERE recency = 1
GROUP BY check_date, status
ORDER BY check_date, status;
