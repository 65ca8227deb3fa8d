-- Purpose: the latest result of every check for one date (operator CLI "status").
-- Grain: one row per check_name: the most recent run that checked it (ties: the later run_id).
-- Parameters: @check_date (DATE).
WITH

date_results AS (
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
        checked_at,
        ROW_NUMBER() OVER (PARTITION BY check_name ORDER BY checked_at DESC, run_id DESC) AS recency
    FROM ops.data_quality_results
    WHERE check_date = CAST(@check_date AS DATE)
)

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
FROM date_results
WHERE recency = 1
ORDER BY check_name;
