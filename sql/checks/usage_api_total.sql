-- Check: usage_api_total (severity: fail).
-- Purpose: every record the API returned for the date is accounted for: rows staged in
--   stg.product_usage + rejected + repeated + conflicting repeats (one kept per company) =
--   stg.usage_pulls.api_record_count, within @tolerance (a share of the API count). Counting
--   the staged rows in stg.product_usage (not the manifest's staged_row_count) also catches a
--   staging that lost or gained rows after the pull was recorded. A date without a recorded
--   pull passes with note 'no_usage_pull' (input_freshness reports missing inputs).
-- Grain: one summary row for @check_date: observed_value = |difference| / API count,
--   offending_rows = |difference| in records, reference_value = the API count.
-- Parameters: @check_date (DATE), @tolerance (FLOAT).
WITH

usage_pull AS (
    SELECT
        api_record_count,
        rejected_record_count,
        duplicate_record_count,
        conflicting_record_count
    FROM stg.usage_pulls
    WHERE activity_date = CAST(@check_date AS DATE)
),

staged_usage AS (
    SELECT COUNT(*) AS staged_rows
    FROM stg.product_usage
    WHERE activity_date = CAST(@check_date AS DATE)
),

reconciled AS (
    SELECT
        p.api_record_count,
        s.staged_rows
        + p.rejected_record_count
        + p.duplicate_record_count
        + p.conflicting_record_count AS accounted_records
    FROM staged_usage AS s
    LEFT JOIN usage_pull AS p ON 1 = 1
),

measured AS (
    SELECT
        api_record_count,
        accounted_records,
        ABS(api_record_count - accounted_records) AS difference,
        CASE
            WHEN api_record_count IS NULL THEN NULL
            WHEN api_record_count > 0
                THEN CAST(ABS(api_record_count - accounted_records) AS FLOAT) / api_record_count
            WHEN accounted_records = 0 THEN CAST(0 AS FLOAT)
            ELSE CAST(1 AS FLOAT)
        END AS difference_share
    FROM reconciled
)

SELECT
    difference_share AS observed_value,
    CAST(@tolerance AS FLOAT) AS threshold,
    CAST(difference AS BIGINT) AS offending_rows,
    CASE WHEN difference_share > CAST(@tolerance AS FLOAT) THEN 1 ELSE 0 END AS is_violation,
    CAST(api_record_count AS FLOAT) AS reference_value,
    CASE WHEN api_record_count IS NULL THEN 'no_usage_pull' END AS note
FROM measured;
