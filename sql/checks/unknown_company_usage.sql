-- Check: unknown_company_usage (severity: warn).
-- Purpose: usage rows of the date whose company is not in the CRM snapshot in force that day
--   (the latest snapshot dated on or before it). Such rows are kept (attributes NULL); a share
--   above @threshold suggests a CRM export or an id mapping problem.
-- Grain: one summary row for @check_date: observed_value = unknown share of the date's usage
--   rows, offending_rows = unknown usage rows, reference_value = all usage rows of the date,
--   note = the snapshot date used.
-- Parameters: @check_date (DATE), @threshold (FLOAT).
WITH

snapshot_in_force AS (
    SELECT MAX(snapshot_date) AS snapshot_date
    FROM stg.crm_snapshots
    WHERE snapshot_date <= CAST(@check_date AS DATE)
),

crm_companies AS (
    SELECT c.company_id
    FROM stg.crm_companies AS c
    INNER JOIN snapshot_in_force AS s ON c.snapshot_date = s.snapshot_date
),

usage_of_day AS (
    SELECT company_id
    FROM stg.product_usage
    WHERE activity_date = CAST(@check_date AS DATE)
),

unknown_usage AS (
    SELECT u.company_id
    FROM usage_of_day AS u
    WHERE NOT EXISTS (
        SELECT 1
        FROM crm_companies AS c
        WHERE c.company_id = u.company_id
    )
),

counted AS (
    SELECT
        (SELECT COUNT(*) FROM usage_of_day) AS usage_rows,
        (SELECT COUNT(*) FROM unknown_usage) AS unknown_rows,
        (SELECT snapshot_date FROM snapshot_in_force) AS snapshot_date
),

measured AS (
    SELECT
        usage_rows,
        unknown_rows,
        snapshot_date,
        CASE
            WHEN usage_rows > 0 THEN CAST(unknown_rows AS FLOAT) / usage_rows ELSE CAST(0 AS FLOAT)
        END AS unknown_share
    FROM counted
)

SELECT
    unknown_share AS observed_value,
    CAST(@threshold AS FLOAT) AS threshold,
    CAST(unknown_rows AS BIGINT) AS offending_rows,
    CASE WHEN unknown_share > CAST(@threshold AS FLOAT) THEN 1 ELSE 0 END AS is_violation,
    CAST(usage_rows AS FLOAT) AS reference_value,
    CASE
        WHEN snapshot_date IS NULL THEN 'no_crm_snapshot'
        ELSE CONCAT('crm_snapshot=', CAST(snapshot_date AS NVARCHAR(10)))
    END AS note
FROM measured;
