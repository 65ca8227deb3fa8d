-- Purpose: one definition of "the current result of a check for a date": the latest run that
--   checked it (ties: the later run_id). A later run that passes closes an earlier failure.
--   The operator status (ops/data_quality_results__latest_for_date.sql) and the run report
--   (report/open_check_failures.sql, report/check_results_per_day.sql) select from this view
--   instead of each repeating the ranking.
-- Grain: one row per (check_date, check_name). Filters on check_date reach the table's
--   (check_date, check_name) index: it is a partitioning column of the ranking.
CREATE VIEW ops.data_quality_results_latest AS
WITH

ranked_results AS (
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
        ROW_NUMBER() OVER (
            PARTITION BY check_date, check_name ORDER BY checked_at DESC, run_id DESC
        ) AS recency
    FROM ops.data_quality_results
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
FROM ranked_results
WHERE recency = 1;
