-- Purpose: the 28-day and trend columns of analytics.company_daily_activity (SPEC section 4,
--   issue 18), on the product table, on the build's work table, and in the current-attributes
--   view. The columns are NULL-able: rows built before this migration hold NULL in them until
--   they are rebuilt (e.g. `rebuild --start <first built date> --end <last built date>` with the
--   operator CLI); the build's MERGE compares them with IS DISTINCT FROM, so a rebuild fills
--   them even where every other value is unchanged. Every build from now on writes them.
--   - active_users_28d, events_28d, active_days_28d: calendar days D-27..D, missing days 0.
--   - events_prev_7d: events over D-13..D-7.
--   - events_7d_change_pct: (events_7d - events_prev_7d) / events_prev_7d x 100, rounded to 2
--     decimals; NULL when events_prev_7d = 0. DECIMAL(23, 2) holds any BIGINT change.
--   - engagement_consistency_28d: active_days_28d / 28.
--   - events_per_active_user_7d: events_7d / active_users_7d, 2 decimals; NULL when 0.
-- One ALTER per column: the form both engines accept.

ALTER TABLE analytics.company_daily_activity ADD active_users_28d INT NULL;
ALTER TABLE analytics.company_daily_activity ADD events_28d BIGINT NULL;
ALTER TABLE analytics.company_daily_activity ADD active_days_28d INT NULL;
ALTER TABLE analytics.company_daily_activity ADD events_prev_7d BIGINT NULL;
ALTER TABLE analytics.company_daily_activity ADD events_7d_change_pct DECIMAL(23, 2) NULL;
ALTER TABLE analytics.company_daily_activity ADD engagement_consistency_28d DECIMAL(5, 4) NULL;
ALTER TABLE analytics.company_daily_activity ADD events_per_active_user_7d DECIMAL(21, 2) NULL;

-- The work table holds no rows between builds; its new columns are filled by every build.
ALTER TABLE analytics.company_daily_activity_build ADD active_users_28d INT NULL;
ALTER TABLE analytics.company_daily_activity_build ADD events_28d BIGINT NULL;
ALTER TABLE analytics.company_daily_activity_build ADD active_days_28d INT NULL;
ALTER TABLE analytics.company_daily_activity_build ADD events_prev_7d BIGINT NULL;
ALTER TABLE analytics.company_daily_activity_build ADD events_7d_change_pct DECIMAL(23, 2) NULL;
ALTER TABLE analytics.company_daily_activity_build ADD engagement_consistency_28d DECIMAL(5, 4) NULL;
ALTER TABLE analytics.company_daily_activity_build ADD events_per_active_user_7d DECIMAL(21, 2) NULL;

-- The current-attributes view (first created in 0004) with the new columns.
CREATE OR ALTER VIEW analytics.company_daily_activity_current AS
SELECT
    activity.activity_date,
    activity.company_id,
    current_version.company_name,
    current_version.country,
    current_version.industry_tag,
    current_version.last_contact_at,
    activity.active_users,
    activity.events,
    activity.active_users_7d,
    activity.events_7d,
    activity.active_days_7d,
    activity.active_users_28d,
    activity.events_28d,
    activity.active_days_28d,
    activity.events_prev_7d,
    activity.events_7d_change_pct,
    activity.engagement_consistency_28d,
    activity.events_per_active_user_7d,
    activity.days_since_last_activity,
    activity.is_churn_risk,
    activity.crm_snapshot_date,
    activity.data_quality_flags,
    activity.record_loaded_at,
    activity.run_id
FROM analytics.company_daily_activity AS activity
LEFT JOIN dim.companies AS current_version
    ON
        activity.company_id = current_version.company_id
        AND current_version.is_current = 1;

-- Weekly and monthly activity per company, over the daily rows of
-- analytics.company_daily_activity (so they always agree with it). A day that is not built, or
-- on which the company is not in the spine, is absent: it adds nothing and is not counted in
-- days_present. Partial periods (the current week or month, a company's first or last one,
-- gaps) are included; days_present < days_in_period says so.
--   active_users: sum of the daily active users (user-days: the API has no distinct users);
--   events: sum of daily events; active_days: days with active_users > 0 (as active_days_7d);
--   attributes, crm_snapshot_date, days_since_last_activity and is_churn_risk: those of the
--   period's last present day (last_date_present; the period's end when that day is built).
-- Weeks are ISO weeks: Monday to Sunday, numbered within the ISO year (the year of their
-- Thursday). The Monday is found from a day count since 1900-01-01, a Monday, so it does not
-- depend on the session's DATEFIRST setting as DATEPART(WEEKDAY, ...) would.
CREATE VIEW analytics.company_weekly_activity AS
WITH

daily AS (
    SELECT
        DATEADD(
            DAY, -(DATEDIFF(DAY, CAST('1900-01-01' AS DATE), activity_date) % 7), activity_date
        ) AS week_start,
        company_id,
        activity_date,
        active_users,
        events
    FROM analytics.company_daily_activity
),

weeks AS (
    SELECT
        week_start,
        company_id,
        CAST(COUNT(*) AS INT) AS days_present,
        MAX(activity_date) AS last_date_present,
        CAST(SUM(CAST(active_users AS BIGINT)) AS BIGINT) AS active_users,
        CAST(SUM(events) AS BIGINT) AS events,
        CAST(SUM(CASE WHEN active_users > 0 THEN 1 ELSE 0 END) AS INT) AS active_days
    FROM daily
    GROUP BY week_start, company_id
)

SELECT
    CAST(YEAR(DATEADD(DAY, 3, weeks.week_start)) AS INT) AS iso_year,
    CAST(DATEPART(ISO_WEEK, weeks.week_start) AS INT) AS iso_week,
    weeks.week_start,
    DATEADD(DAY, 6, weeks.week_start) AS week_end,
    weeks.company_id,
    last_day.company_name,
    last_day.country,
    last_day.industry_tag,
    last_day.last_contact_at,
    weeks.active_users,
    weeks.events,
    weeks.active_days,
    weeks.days_present,
    7 AS days_in_period,
    weeks.last_date_present,
    last_day.days_since_last_activity,
    last_day.is_churn_risk,
    last_day.crm_snapshot_date
FROM weeks
INNER JOIN analytics.company_daily_activity AS last_day
    ON
        weeks.last_date_present = last_day.activity_date
        AND weeks.company_id = last_day.company_id;

-- Calendar months: the same columns as the weekly view (see above).
CREATE VIEW analytics.company_monthly_activity AS
WITH

months AS (
    SELECT
        DATEFROMPARTS(YEAR(activity_date), MONTH(activity_date), 1) AS month_start,
        company_id,
        CAST(COUNT(*) AS INT) AS days_present,
        MAX(activity_date) AS last_date_present,
        CAST(SUM(CAST(active_users AS BIGINT)) AS BIGINT) AS active_users,
        CAST(SUM(events) AS BIGINT) AS events,
        CAST(SUM(CASE WHEN active_users > 0 THEN 1 ELSE 0 END) AS INT) AS active_days
    FROM analytics.company_daily_activity
    GROUP BY DATEFROMPARTS(YEAR(activity_date), MONTH(activity_date), 1), company_id
)

SELECT
    CAST(YEAR(months.month_start) AS INT) AS calendar_year,
    CAST(MONTH(months.month_start) AS INT) AS calendar_month,
    months.month_start,
    EOMONTH(months.month_start) AS month_end,
    months.company_id,
    last_day.company_name,
    last_day.country,
    last_day.industry_tag,
    last_day.last_contact_at,
    months.active_users,
    months.events,
    months.active_days,
    months.days_present,
    CAST(DAY(EOMONTH(months.month_start)) AS INT) AS days_in_period,
    months.last_date_present,
    last_day.days_since_last_activity,
    last_day.is_churn_risk,
    last_day.crm_snapshot_date
FROM months
INNER JOIN analytics.company_daily_activity AS last_day
    ON
        months.last_date_present = last_day.activity_date
        AND months.company_id = last_day.company_id;
