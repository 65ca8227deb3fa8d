-- Check: input_freshness (severity: fail).
-- Purpose: both inputs of the date (the CRM snapshot dated that day and the usage pull) must
--   be staged within @deadline_hours after the UTC day ended. The time comes in as @now: SQL
--   never reads the clock.
-- Grain: one summary row for @check_date: observed_value = hours since the day ended,
--   offending_rows = missing inputs (0..2), note = which ones ('crm', 'usage', 'crm,usage').
-- Parameters: @check_date (DATE), @now (DATETIME2, UTC), @deadline_hours (FLOAT).
WITH

inputs AS (
    SELECT
        (
            SELECT COUNT(*) FROM stg.crm_snapshots
            WHERE snapshot_date = CAST(@check_date AS DATE)
        ) AS crm_present,
        (
            SELECT COUNT(*) FROM stg.usage_pulls
            WHERE activity_date = CAST(@check_date AS DATE)
        ) AS usage_present,
        DATEDIFF(
            MINUTE, CAST(DATEADD(DAY, 1, CAST(@check_date AS DATE)) AS DATETIME2), CAST(@now AS DATETIME2)
        ) / 60.0 AS hours_since_day_end
),

missing AS (
    SELECT
        hours_since_day_end,
        CASE WHEN crm_present = 0 THEN 1 ELSE 0 END AS crm_missing,
        CASE WHEN usage_present = 0 THEN 1 ELSE 0 END AS usage_missing
    FROM inputs
)

SELECT
    CAST(hours_since_day_end AS FLOAT) AS observed_value,
    CAST(@deadline_hours AS FLOAT) AS threshold,
    CAST(crm_missing + usage_missing AS BIGINT) AS offending_rows,
    CASE
        WHEN crm_missing + usage_missing > 0 AND hours_since_day_end >= CAST(@deadline_hours AS FLOAT) THEN 1
        ELSE 0
    END AS is_violation,
    CAST(NULL AS FLOAT) AS reference_value,
    CASE
        WHEN crm_missing = 1 AND usage_missing = 1 THEN 'missing=crm,usage'
        WHEN crm_missing = 1 THEN 'missing=crm'
        WHEN usage_missing = 1 THEN 'missing=usage'
    END AS note
FROM missing;
