-- Purpose: when each input of the dates in a range arrived (was staged): the CRM snapshot dated
--   that day and the day's usage pull. A date without a row for an input has not received it.
-- Grain: one row per (activity_date, input_name) that is present.
-- Parameters: @date_from, @date_to (DATE, inclusive).
WITH

crm AS (
    SELECT
        snapshot_date AS activity_date,
        'crm' AS input_name,
        ingested_at AS arrived_at
    FROM stg.crm_snapshots
    WHERE snapshot_date BETWEEN CAST(@date_from AS DATE) AND CAST(@date_to AS DATE)
),

usage AS (
    SELECT
        activity_date,
        'usage' AS input_name,
        ingested_at AS arrived_at
    FROM stg.usage_pulls
    WHERE activity_date BETWEEN CAST(@date_from AS DATE) AND CAST(@date_to AS DATE)
)

SELECT
    activity_date,
    input_name,
    arrived_at
FROM crm
UNION ALL
SELECT
    activity_date,
    input_name,
    arrived_at
FROM usage;
