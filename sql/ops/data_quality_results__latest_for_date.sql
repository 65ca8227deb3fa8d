-- Purpose: the latest result of every check for one date (operator CLI "status").
-- Grain: one row per check_name (ops.data_quality_results_latest ranks the runs).
-- Parameters: @check_date (DATE).
SELECT
    run_id,
    check_date,
    check_name,
    severity,
    status,
    observed_value,
    threshold,
    offending_rows,
    reference_value,
    note,
    message,
    checked_at
FROM ops.data_quality_results_latest
WHERE check_date = CAST(@check_date AS DATE)
ORDER BY check_name;
