-- Check: duplicate_keys (severity: fail), run three times under three names: @key_set
--   'stg_usage' (stg_usage_duplicate_keys), 'stg_crm' (stg_crm_duplicate_keys) and
--   'analytics' (analytics_duplicate_keys).
-- Purpose: the table of @key_set must hold one row per company for @check_date: staged usage
--   (stg.product_usage), the CRM snapshot dated @check_date (stg.crm_companies), or the built
--   analytics rows (analytics.company_daily_activity).
--   Keys are compared the way Azure SQL compares the binary-collated (BIN2) ids: exactly,
--   except that trailing spaces are ignored. The primary keys already reject exact repeats;
--   what can slip through on the embedded engine is the same id with trailing spaces, which
--   Azure SQL would treat as one key. Ids differing in case are two companies.
--   stg.crm_companies has no key on the embedded engine (migration 0016: its load SQL keeps
--   the grain by construction): there this check is what catches an exact repeat too.
--   One file over the three key sets instead of three copies: T-SQL cannot take a table name
--   as a parameter, and each branch's @key_set test keeps the other two tables unread.
-- Grain: one summary row for (@key_set, @check_date): observed_value = duplicated keys,
--   offending_rows = rows carrying a duplicated key.
-- Parameters: @key_set (NVARCHAR: stg_usage, stg_crm or analytics), @check_date (DATE).
WITH

usage_keys AS (
    SELECT RTRIM(company_id) AS company_key
    FROM stg.product_usage
    WHERE @key_set = 'stg_usage' AND activity_date = CAST(@check_date AS DATE)
),

crm_keys AS (
    SELECT RTRIM(company_id) AS company_key
    FROM stg.crm_companies
    WHERE @key_set = 'stg_crm' AND snapshot_date = CAST(@check_date AS DATE)
),

analytics_keys AS (
    SELECT RTRIM(company_id) AS company_key
    FROM analytics.company_daily_activity
    WHERE @key_set = 'analytics' AND activity_date = CAST(@check_date AS DATE)
),

date_keys AS (
    SELECT company_key FROM usage_keys
    UNION ALL
    SELECT company_key FROM crm_keys
    UNION ALL
    SELECT company_key FROM analytics_keys
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
