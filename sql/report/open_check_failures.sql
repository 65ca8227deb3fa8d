-- Purpose: the open data-quality failures of a range for the run report: checks whose latest
--   result for their date failed (status fail) or could not run (status error). A failure a
--   later run of the same check and date passed is closed and not listed.
-- Grain: one row per (check_date, check_name).
-- Parameters: @date_from, @date_to (inclusive UTC days).
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
FROM ops.data_quality_results_latest
WHERE
    check_date BETWEEN @date_from AND @date_to
    AND status IN ('fail', 'error')
ORDER BY check_date DESC, check_name ASC;
