-- Purpose: the built dates whose CRM snapshot in force is no longer the one they were built
--   with. A snapshot staged, replaced or removed for day S changes every built day from S up to
--   the next snapshot (exclusive): their crm_snapshot_date, attributes, spine and flags. Comparing
--   each built day's recorded snapshot (date and content hash) with the one in force now finds
--   exactly those days, whatever order the snapshots arrived in, and also days that an earlier
--   build or a lost message missed. ("Known since" moving is found by
--   analytics/company_daily_activity__dates_beyond_window.sql.)
-- Reads one row per snapshot and per built date, never analytics rows: cheap on every build.
-- Grain: one row per such activity_date, ascending, with the input versions of its last build.
-- Parameters: none.
WITH

snapshot_spans AS (
    SELECT
        snapshot_date,
        content_hash,
        LEAD(snapshot_date) OVER (ORDER BY snapshot_date) AS next_snapshot_date
    FROM stg.crm_snapshots
),

in_force AS (
    SELECT
        builds.activity_date,
        builds.crm_version,
        builds.usage_version,
        builds.crm_snapshot_date AS built_snapshot_date,
        builds.crm_snapshot_version AS built_snapshot_version,
        spans.snapshot_date,
        spans.content_hash AS snapshot_version
    FROM ops.date_builds AS builds
    LEFT JOIN snapshot_spans AS spans
        ON
            builds.activity_date >= spans.snapshot_date
            AND (spans.next_snapshot_date IS NULL OR builds.activity_date < spans.next_snapshot_date)
)

SELECT
    activity_date,
    crm_version,
    usage_version
FROM in_force
WHERE
    built_snapshot_date IS DISTINCT FROM snapshot_date
    OR built_snapshot_version IS DISTINCT FROM snapshot_version
ORDER BY activity_date;
