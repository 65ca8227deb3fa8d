-- Purpose: the run report's activity per day: what the built rows of each day add up to.
--   The 7- and 28-day lines are daily averages read from the rows' own calendar-window columns
--   (sum over the day's companies of active_users_7d / 7, of active_users_28d / 28, ...), so the
--   report shows the numbers the table holds instead of recomputing windows it may get wrong.
--   Divisions are on FLOAT on purpose: integer division differs between T-SQL and DuckDB.
--   Rows built before migration 0007 hold NULL 28-day columns until rebuilt: a day with any such
--   row gets NULL 28-day averages (and rows_without_28d says how many), never a partial sum.
-- Grain: one row per activity_date in the range that has analytics rows (unbuilt days are absent).
-- Parameters: @date_from, @date_to (inclusive UTC days).
SELECT
    activity_date,
    COUNT(*) AS row_count,
    SUM(CAST(active_users AS BIGINT)) AS active_users,
    SUM(events) AS events,
    CAST(SUM(CAST(active_users_7d AS BIGINT)) AS FLOAT) / 7.0 AS active_users_7d_avg,
    CASE
        WHEN COUNT(active_users_28d) = COUNT(*) THEN CAST(SUM(CAST(active_users_28d AS BIGINT)) AS FLOAT) / 28.0
    END AS active_users_28d_avg,
    CAST(SUM(events_7d) AS FLOAT) / 7.0 AS events_7d_avg,
    CASE WHEN COUNT(events_28d) = COUNT(*) THEN CAST(SUM(events_28d) AS FLOAT) / 28.0 END AS events_28d_avg,
    COUNT(*) - COUNT(events_28d) AS rows_without_28d,
    SUM(CASE WHEN is_churn_risk = 1 THEN 1 ELSE 0 END) AS churn_risk_companies,
    SUM(CASE WHEN data_quality_flags <> '' THEN 1 ELSE 0 END) AS flagged_rows,
    SUM(CASE WHEN data_quality_flags LIKE '%crm_stale%' THEN 1 ELSE 0 END) AS crm_stale_rows,
    MAX(crm_snapshot_date) AS crm_snapshot_date
FROM analytics.company_daily_activity
WHERE activity_date BETWEEN @date_from AND @date_to
GROUP BY activity_date
ORDER BY activity_date;
