-- Purpose: the first date for which the pipeline ever received an input (a CRM snapshot or a
--   usage pull): freshness is not evaluated for the days before the pipeline started.
-- Grain: one row; first_input_date is NULL when nothing has arrived yet.
-- Parameters: none.
WITH

first_dates AS (
    SELECT MIN(snapshot_date) AS first_date FROM stg.crm_snapshots
    UNION ALL
    SELECT MIN(activity_date) AS first_date FROM stg.usage_pulls
)

SELECT MIN(first_date) AS first_input_date
FROM first_dates;
