-- Purpose: how many landing rows belong to loads whose run is no longer running (finished,
--   failed or abandoned): debris of a killed process, which no swap will ever read.
-- Grain: one row per landing table.
-- Parameters: none.
WITH live_runs AS (
    SELECT DISTINCT run_id
    FROM ops.pipeline_runs
    WHERE status = 'running'
),

crm AS (
    SELECT COUNT(*) AS row_count
    FROM stg.crm_companies_landing
    WHERE load_id NOT IN (SELECT live_runs.run_id FROM live_runs)
),

usage AS (
    SELECT COUNT(*) AS row_count
    FROM stg.product_usage_landing
    WHERE load_id NOT IN (SELECT live_runs.run_id FROM live_runs)
),

builds AS (
    SELECT COUNT(*) AS row_count
    FROM ops.date_builds_landing
    WHERE run_id NOT IN (SELECT live_runs.run_id FROM live_runs)
)

SELECT
    'stg.crm_companies_landing' AS landing_table,
    crm.row_count
FROM crm
UNION ALL
SELECT
    'stg.product_usage_landing' AS landing_table,
    usage.row_count
FROM usage
UNION ALL
SELECT
    'ops.date_builds_landing' AS landing_table,
    builds.row_count
FROM builds;
