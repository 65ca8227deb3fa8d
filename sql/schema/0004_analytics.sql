-- Purpose: the product table. Grain: one row per (activity_date, company_id).
CREATE TABLE analytics.company_daily_activity (
    activity_date DATE NOT NULL,
    company_id NVARCHAR(64) COLLATE Latin1_General_100_BIN2 NOT NULL,
    company_name NVARCHAR(400) NULL,
    country NVARCHAR(100) NULL,
    industry_tag NVARCHAR(200) NULL,
    last_contact_at DATETIME2(6) NULL,
    active_users INT NOT NULL,
    events BIGINT NOT NULL,
    active_users_7d INT NOT NULL,
    events_7d BIGINT NOT NULL,
    active_days_7d INT NOT NULL,
    days_since_last_activity INT NULL,
    is_churn_risk BIT NOT NULL,
    crm_snapshot_date DATE NULL,
    data_quality_flags NVARCHAR(400) NOT NULL,
    record_loaded_at DATETIME2(6) NOT NULL,
    run_id NVARCHAR(64) NOT NULL,
    PRIMARY KEY (activity_date, company_id)
);

CREATE INDEX ix_company_daily_activity_company ON analytics.company_daily_activity (company_id, activity_date);

-- Work table of sql/analytics/company_daily_activity__build.sql: the rows one build (run_id)
-- computed, held between computing them and merging them into the product table, then deleted.
CREATE TABLE analytics.company_daily_activity_build (
    run_id NVARCHAR(64) NOT NULL,
    activity_date DATE NOT NULL,
    company_id NVARCHAR(64) COLLATE Latin1_General_100_BIN2 NOT NULL,
    company_name NVARCHAR(400) NULL,
    country NVARCHAR(100) NULL,
    industry_tag NVARCHAR(200) NULL,
    last_contact_at DATETIME2(6) NULL,
    active_users INT NOT NULL,
    events BIGINT NOT NULL,
    active_users_7d INT NOT NULL,
    events_7d BIGINT NOT NULL,
    active_days_7d INT NOT NULL,
    days_since_last_activity INT NULL,
    is_churn_risk BIT NOT NULL,
    crm_snapshot_date DATE NULL,
    data_quality_flags NVARCHAR(400) NOT NULL,
    PRIMARY KEY (run_id, activity_date, company_id)
);

-- The same rows with the CURRENT CRM attributes (the version with is_current = 1) instead of
-- those in force on the day: "what is this company called now" for dashboards over history.
-- A company no longer in the CRM (no current version) shows NULL attributes here.
CREATE VIEW analytics.company_daily_activity_current AS
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
    activity.days_since_last_activity,
    activity.is_churn_risk,
    activity.crm_snapshot_date,
    activity.data_quality_flags,
    activity.record_loaded_at,
    activity.run_id
FROM analytics.company_daily_activity AS activity
LEFT JOIN dim.companies AS current_version
    ON activity.company_id = current_version.company_id
    AND current_version.is_current = 1;
