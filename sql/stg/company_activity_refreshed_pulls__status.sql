-- Purpose: what the builder must refresh before it builds. stale_from is the earliest usage
--   date whose staged pull the derived tables (stg.company_activity_checkpoints,
--   stg.company_first_usage) do not reflect yet: a new, re-staged or removed pull. NULL when
--   they are current. last_checkpoint_date is the newest month start with checkpoints;
--   first_pull_date and last_pull_date bound the staged usage (the months a checkpoint refresh
--   would compute: the builder skips a refresh that would change nothing).
-- Grain: exactly one row.
-- Parameters: none.
WITH

pulls AS (
    SELECT
        activity_date,
        content_hash,
        ingested_at
    FROM stg.usage_pulls
),

refreshed AS (
    SELECT
        activity_date,
        content_hash,
        ingested_at
    FROM stg.company_activity_refreshed_pulls
),

changed_dates AS (
    SELECT COALESCE(pulls.activity_date, refreshed.activity_date) AS activity_date
    FROM pulls
    FULL OUTER JOIN refreshed
        ON pulls.activity_date = refreshed.activity_date
    WHERE
        pulls.activity_date IS NULL
        OR refreshed.activity_date IS NULL
        OR pulls.content_hash <> refreshed.content_hash
        OR pulls.ingested_at <> refreshed.ingested_at
)

SELECT
    (SELECT MIN(activity_date) FROM changed_dates) AS stale_from,
    (SELECT MAX(checkpoint_date) FROM stg.company_activity_checkpoints) AS last_checkpoint_date,
    (SELECT MIN(activity_date) FROM stg.usage_pulls) AS first_pull_date,
    (SELECT MAX(activity_date) FROM stg.usage_pulls) AS last_pull_date;
