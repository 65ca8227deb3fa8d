-- Purpose: the last successful build of each date of a range (ops.date_builds) with the run that
-- wrote it (ops.pipeline_runs) and the analytics rows the date holds now (which differ from the
-- build's row_count after a rollback), and when the full data-quality checks last ran for it
-- (a build counts as done only when its checks ran after it; analytics_row_count is part of every
-- full check run and of no partial one, such as the timer's freshness check).
-- Grain: one row per activity_date that was built or has analytics rows.
-- Parameters: @date_from, @date_to (inclusive UTC days).
WITH builds AS (
    SELECT
        activity_date,
        crm_version,
        usage_version,
        crm_snapshot_date,
        row_count,
        built_at,
        run_id
    FROM ops.date_builds
    WHERE activity_date BETWEEN @date_from AND @date_to
),

build_runs AS (
    -- A build run may cover several dates (one range); its duration is the whole run's.
    SELECT
        r.run_id,
        MAX(r.duration_ms) AS duration_ms,
        MIN(r.started_at) AS started_at,
        MAX(r.finished_at) AS finished_at
    FROM ops.pipeline_runs AS r
    WHERE r.run_id IN (SELECT b.run_id FROM builds AS b)
    GROUP BY r.run_id
),

analytics_rows AS (
    SELECT
        activity_date,
        COUNT(*) AS current_rows
    FROM analytics.company_daily_activity
    WHERE activity_date BETWEEN @date_from AND @date_to
    GROUP BY activity_date
),

checked AS (
    SELECT
        check_date AS activity_date,
        MAX(checked_at) AS last_checked_at
    FROM ops.data_quality_results
    WHERE
        check_date BETWEEN @date_from AND @date_to
        AND check_name = 'analytics_row_count'
        AND status <> 'error'
    GROUP BY check_date
),

dates AS (
    SELECT activity_date FROM builds
    UNION
    SELECT activity_date FROM analytics_rows
)

SELECT
    d.activity_date,
    b.crm_version,
    b.usage_version,
    b.crm_snapshot_date,
    b.row_count,
    b.built_at,
    b.run_id,
    r.duration_ms,
    r.started_at,
    r.finished_at,
    COALESCE(a.current_rows, 0) AS current_rows,
    c.last_checked_at,
    CASE WHEN c.last_checked_at >= b.built_at THEN 1 ELSE 0 END AS checks_ran
FROM dates AS d
LEFT JOIN builds AS b ON d.activity_date = b.activity_date
LEFT JOIN build_runs AS r ON b.run_id = r.run_id
LEFT JOIN analytics_rows AS a ON d.activity_date = a.activity_date
LEFT JOIN checked AS c ON d.activity_date = c.activity_date
ORDER BY d.activity_date;
