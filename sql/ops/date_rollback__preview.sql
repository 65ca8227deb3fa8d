-- Purpose: what a rollback of one date would remove: its analytics rows and its build record.
-- Grain: one row.
-- Parameters: @activity_date.
SELECT
    (
        SELECT COUNT(*) FROM analytics.company_daily_activity AS a
        WHERE a.activity_date = @activity_date
    ) AS analytics_rows,
    (
        SELECT COUNT(*) FROM ops.date_builds AS b
        WHERE b.activity_date = @activity_date
    ) AS build_records;
