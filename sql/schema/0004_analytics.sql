-- Purpose: the product table. Grain: one row per (activity_date, company_id).
CREATE TABLE analytics.company_daily_activity (
    activity_date DATE NOT NULL,
    company_id NVARCHAR(64) NOT NULL,
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
