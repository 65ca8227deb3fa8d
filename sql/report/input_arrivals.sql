-- Purpose: when each input of a day arrived, for the run report's freshness chart: the CRM
--   snapshot dated that day and the usage pull of that day (staged, from stg.*), how many hours
--   after the UTC day ended each was staged, and how many CRM files of that day were quarantined.
--   A day without its own CRM snapshot is built from an older one (flag crm_stale), which the
--   report reads from daily_activity.sql.
-- Grain: one row per date in the range with a staged input or a quarantined file.
-- Parameters: @date_from, @date_to (inclusive UTC days).
WITH

crm AS (
    SELECT
        snapshot_date AS input_date,
        ingested_at,
        row_count
    FROM stg.crm_snapshots
    WHERE snapshot_date BETWEEN @date_from AND @date_to
),

usage AS (
    SELECT
        activity_date AS input_date,
        ingested_at,
        staged_row_count AS row_count
    FROM stg.usage_pulls
    WHERE activity_date BETWEEN @date_from AND @date_to
),

quarantine AS (
    SELECT
        snapshot_date AS input_date,
        COUNT(*) AS quarantined_files
    FROM ops.quarantined_files
    WHERE snapshot_date BETWEEN @date_from AND @date_to
    GROUP BY snapshot_date
),

input_dates AS (
    SELECT input_date FROM crm
    UNION
    SELECT input_date FROM usage
    UNION
    SELECT input_date FROM quarantine
)

SELECT
    d.input_date,
    crm.ingested_at AS crm_staged_at,
    crm.row_count AS crm_rows,
    DATEDIFF(MINUTE, CAST(DATEADD(DAY, 1, d.input_date) AS DATETIME2), crm.ingested_at) / 60.0
        AS crm_hours_after_day_end,
    usage.ingested_at AS usage_staged_at,
    usage.row_count AS usage_rows,
    DATEDIFF(MINUTE, CAST(DATEADD(DAY, 1, d.input_date) AS DATETIME2), usage.ingested_at) / 60.0
        AS usage_hours_after_day_end,
    COALESCE(quarantine.quarantined_files, 0) AS quarantined_files
FROM input_dates AS d
LEFT JOIN crm ON d.input_date = crm.input_date
LEFT JOIN usage ON d.input_date = usage.input_date
LEFT JOIN quarantine ON d.input_date = quarantine.input_date
ORDER BY d.input_date;
