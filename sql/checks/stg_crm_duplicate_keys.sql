-- Check: stg_crm_duplicate_keys (severity: fail).
-- Purpose: the CRM snapshot dated @check_date (stg.crm_companies) must hold one row per
--   company.
--   Keys are compared the way Azure SQL compares the binary-collated (BIN2) ids: exactly,
--   except that trailing spaces are ignored. The primary key already rejects exact repeats;
--   what can slip through on the embedded engine is the same id with trailing spaces, which
--   Azure SQL would treat as one key. Ids differing in case are two companies.
-- Grain: one summary row for @check_date: observed_value = duplicated keys,
--   offending_rows = rows carrying a duplicated key.
-- Parameters: @check_date (DATE).
WITH

date_keys AS (
    SELECT RTRIM(company_id) AS company_key
    FROM stg.crm_companies
    WHERE snapshot_date = CAST(@check_date AS DATE)
),

duplicate_keys AS (
    SELECT
        company_key,
        COUNT(*) AS copies
    FROM date_keys
    GROUP BY company_key
    HAVING COUNT(*) > 1
)

SELECT
    CAST(COUNT(*) AS FLOAT) AS observed_value,
    CAST(0 AS FLOAT) AS threshold,
    CAST(COALESCE(SUM(copies), 0) AS BIGINT) AS offending_rows,
    CASE WHEN COUNT(*) > 0 THEN 1 ELSE 0 END AS is_violation,
    CAST(NULL AS FLOAT) AS reference_value,
    CAST(NULL AS NVARCHAR(200)) AS note
FROM duplicate_keys;
