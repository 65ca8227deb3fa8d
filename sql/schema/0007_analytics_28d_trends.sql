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
