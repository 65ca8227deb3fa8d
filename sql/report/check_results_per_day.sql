-- Purpose: the data-quality findings of each day for the run report: the latest result of every
--   check of the day (a later run that passed closes an earlier failure), counted by status.
-- Grain: one row per (check_date, status) in the range.
-- Parameters: @date_from, @date_to (inclusive UTC days).
SELECT
    check_date,
    status,
    COUNT(*) AS checks
FROM ops.data_quality_results_latest
WHERE check_date BETWEEN @date_from AND @date_to
GROUP BY check_date, status
ORDER BY check_date, status;
