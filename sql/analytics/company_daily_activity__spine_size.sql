-- Purpose: an upper bound of the companies on one day of a build's spine (SPEC section 4), so the
--   builder can cut a long range into pieces whose company-days fit the engine's memory: the CRM
--   companies with a version in force at some point of the range, plus the companies of the
--   busiest usage day (usage-only companies). Reads the dim and one count per usage day.
-- Grain: one row.
-- Parameters: @date_from, @date_to (DATE, the range to build).
WITH

crm_companies AS (
    SELECT COUNT(DISTINCT versions.company_id) AS companies
    FROM dim.companies AS versions
    WHERE
        versions.valid_from <= CAST(@date_to AS DATE)
        AND (versions.valid_to IS NULL OR versions.valid_to > CAST(@date_from AS DATE))
),

usage_companies AS (
    SELECT MAX(pulls.staged_row_count) AS companies
    FROM stg.usage_pulls AS pulls
    WHERE pulls.activity_date BETWEEN CAST(@date_from AS DATE) AND CAST(@date_to AS DATE)
)

SELECT crm_companies.companies + COALESCE(usage_companies.companies, 0) AS companies
FROM crm_companies
CROSS JOIN usage_companies;
