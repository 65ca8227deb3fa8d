-- Purpose: remove landing rows of loads whose run is no longer running (a killed process left
--   them; a live load is never touched, so this is safe beside concurrent runs).
-- Grain: deletes from the three landing tables.
-- Parameters: none.
DELETE FROM stg.crm_companies_landing
WHERE load_id NOT IN (
    SELECT r.run_id
    FROM ops.pipeline_runs AS r
    WHERE r.status = 'running'
);

DELETE FROM stg.product_usage_landing
WHERE load_id NOT IN (
    SELECT r.run_id
    FROM ops.pipeline_runs AS r
    WHERE r.status = 'running'
);

DELETE FROM ops.date_builds_landing
WHERE run_id NOT IN (
    SELECT r.run_id
    FROM ops.pipeline_runs AS r
    WHERE r.status = 'running'
);
