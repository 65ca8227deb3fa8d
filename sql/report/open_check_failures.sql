-- Purpose: the open data-quality failures of a range for the run report: checks whose latest
--   result for their date failed (status fail) or could not run (status error). A failure a
--   later run of the same check and date passed is closed and not listed.
-- Grain: one row per (check_date, check_name).
-- Parameters: @date_from, @date_to (inclusive UTC days).
WITH

latest_results AS (
    SELECT
        run_id,
        check_date,
        check_name,
        severity,
        status,
        observed_value,
        threshold,
        offending_rows,
        message,
        checked_at,
        ROW_NUMBER() OVER (
            PARTITION BY check_date, check_name ORDER BY checked_at DESC, run_id DESC
        ) AS recency
    FROM ops.data_quality_results
    WHERE check_date BETWEEN @date_from AND @date_to
)

SELECT
    check_date,
    check_name,
    severity,
    status,
    observed_value,
    threshold,
    offending_rows,
    message,
    checked_at,
    run_id
FROM latest_results
WHERE recency = 1 AND status IN ('fail', 'error')
ORDER BY check_date DESC, check_name ASC;
