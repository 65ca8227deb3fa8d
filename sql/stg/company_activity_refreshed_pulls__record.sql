-- Purpose: after a refresh, remember which usage pulls the derived tables now reflect, so the
--   next build refreshes only from what changed since (see ..._status.sql).
-- Grain: one row per stg.usage_pulls row (pulls that disappeared are forgotten).
-- Parameters: @run_id, @refreshed_at (the build's load time; no clock in SQL).
MERGE INTO stg.company_activity_refreshed_pulls AS refreshed
USING (
    SELECT
        activity_date,
        content_hash,
        ingested_at
    FROM stg.usage_pulls
) AS pulls
    ON refreshed.activity_date = pulls.activity_date
WHEN MATCHED AND (
    refreshed.content_hash <> pulls.content_hash
    OR refreshed.ingested_at <> pulls.ingested_at
) THEN UPDATE SET
    refreshed.content_hash = pulls.content_hash,
    refreshed.ingested_at = pulls.ingested_at,
    refreshed.refreshed_at = @refreshed_at,
    refreshed.run_id = @run_id
WHEN NOT MATCHED BY TARGET THEN
    INSERT (activity_date, content_hash, ingested_at, refreshed_at, run_id)
    VALUES (pulls.activity_date, pulls.content_hash, pulls.ingested_at, @refreshed_at, @run_id)
WHEN NOT MATCHED BY SOURCE THEN DELETE;
