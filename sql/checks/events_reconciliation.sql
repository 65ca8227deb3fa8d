-- Check: events_reconciliation (severity: warn).
-- Purpose: the events rollup (agg.company_daily_events, from raw events) agrees with the API's
--   daily events (stg.product_usage) per company-day of @check_date: a company-day mismatches
--   when |rollup - api| > @tolerance * api (any difference when the API says 0). A company-day
--   present on one side only counts as 0 on the other. A date the rollup has not covered
--   (no rollup rows) passes with note 'no_rollup': raw events may not be collected at all.
-- Grain: one summary row for @check_date: observed_value = the largest relative difference,
--   offending_rows = mismatched company-days, reference_value = company-days compared.
-- Parameters: @check_date (DATE), @tolerance (FLOAT).
WITH

rollup_day AS (
    SELECT
        company_id,
        event_count
    FROM agg.company_daily_events
    WHERE activity_date = CAST(@check_date AS DATE)
),

api_day AS (
    SELECT
        company_id,
        events
    FROM stg.product_usage
    WHERE activity_date = CAST(@check_date AS DATE)
),

company_days AS (
    SELECT
        COALESCE(rollup_day.company_id, api_day.company_id) AS company_id,
        COALESCE(rollup_day.event_count, 0) AS rollup_events,
        COALESCE(api_day.events, 0) AS api_events
    FROM rollup_day
    FULL OUTER JOIN api_day ON rollup_day.company_id = api_day.company_id
),

compared AS (
    SELECT
        company_id,
        CASE
            WHEN api_events > 0 THEN CAST(ABS(rollup_events - api_events) AS FLOAT) / api_events
            WHEN rollup_events = 0 THEN CAST(0 AS FLOAT)
            ELSE CAST(1 AS FLOAT)
        END AS relative_difference
    FROM company_days
),

summary AS (
    SELECT
        (SELECT COUNT(*) FROM rollup_day) AS rollup_rows,
        (SELECT COUNT(*) FROM compared) AS compared_rows,
        (SELECT MAX(relative_difference) FROM compared) AS worst_difference,
        (
            SELECT COUNT(*) FROM compared
            WHERE relative_difference > CAST(@tolerance AS FLOAT)
        ) AS mismatched_rows
)

SELECT
    CASE WHEN rollup_rows > 0 THEN worst_difference END AS observed_value,
    CAST(@tolerance AS FLOAT) AS threshold,
    CAST(CASE WHEN rollup_rows > 0 THEN mismatched_rows ELSE 0 END AS BIGINT) AS offending_rows,
    CASE WHEN rollup_rows > 0 AND mismatched_rows > 0 THEN 1 ELSE 0 END AS is_violation,
    CAST(compared_rows AS FLOAT) AS reference_value,
    CASE WHEN rollup_rows = 0 THEN 'no_rollup' END AS note
FROM summary;
