-- Purpose: the last successful build of each date in a range and the input versions it used:
--   the builder skips dates whose versions did not change and rebuilds already-built window
--   neighbours (D+1..D+6) of a changed date.
-- Grain: one row per built activity_date in @date_from..@date_to.
-- Parameters: @date_from, @date_to (DATE).
SELECT
    activity_date,
    crm_version,
    usage_version,
    crm_snapshot_date,
    row_count,
    built_at,
    run_id
FROM ops.date_builds
WHERE activity_date BETWEEN CAST(@date_from AS DATE) AND CAST(@date_to AS DATE);
