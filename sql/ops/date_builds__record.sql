-- Purpose: record the builds of one run (run_id) in ops.date_builds, in the build's transaction:
--   the input versions it used (loaded into ops.date_builds_landing), the CRM snapshot in force
--   (date and content hash: what ops/date_builds__crm_snapshot_changed.sql compares) and the row
--   count of each rebuilt date. The next build of a date compares against these.
-- Grain: one row per activity_date.
-- Parameters: @run_id, @built_at (the build's load time; no clock in SQL).
WITH

built_dates AS (
    SELECT
        activity_date,
        crm_version,
        usage_version
    FROM ops.date_builds_landing
    WHERE run_id = @run_id
),

row_counts AS (
    SELECT
        activity.activity_date,
        COUNT(*) AS row_count
    FROM analytics.company_daily_activity AS activity
    INNER JOIN built_dates
        ON activity.activity_date = built_dates.activity_date
    GROUP BY activity.activity_date
),

snapshot_in_force AS (
    SELECT
        built_dates.activity_date,
        MAX(snapshots.snapshot_date) AS crm_snapshot_date
    FROM built_dates
    LEFT JOIN stg.crm_snapshots AS snapshots
        ON built_dates.activity_date >= snapshots.snapshot_date
    GROUP BY built_dates.activity_date
),

snapshot_versions AS (
    SELECT
        snapshot_in_force.activity_date,
        snapshot_in_force.crm_snapshot_date,
        snapshots.content_hash AS crm_snapshot_version
    FROM snapshot_in_force
    LEFT JOIN stg.crm_snapshots AS snapshots
        ON snapshot_in_force.crm_snapshot_date = snapshots.snapshot_date
),

builds AS (
    SELECT
        built_dates.activity_date,
        built_dates.crm_version,
        built_dates.usage_version,
        snapshot_versions.crm_snapshot_date,
        snapshot_versions.crm_snapshot_version,
        COALESCE(row_counts.row_count, 0) AS row_count
    FROM built_dates
    INNER JOIN snapshot_versions
        ON built_dates.activity_date = snapshot_versions.activity_date
    LEFT JOIN row_counts
        ON built_dates.activity_date = row_counts.activity_date
)

MERGE INTO ops.date_builds AS target
USING builds AS source
    ON target.activity_date = source.activity_date
WHEN MATCHED THEN UPDATE SET
    target.crm_version = source.crm_version,
    target.usage_version = source.usage_version,
    target.crm_snapshot_date = source.crm_snapshot_date,
    target.crm_snapshot_version = source.crm_snapshot_version,
    target.row_count = source.row_count,
    target.built_at = @built_at,
    target.run_id = @run_id
WHEN NOT MATCHED BY TARGET THEN
    INSERT (
        activity_date, crm_version, usage_version, crm_snapshot_date, crm_snapshot_version, row_count, built_at, run_id
    )
    VALUES (
        source.activity_date,
        source.crm_version,
        source.usage_version,
        source.crm_snapshot_date,
        source.crm_snapshot_version,
        source.row_count,
        @built_at,
        @run_id
    );
