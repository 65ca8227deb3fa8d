-- Purpose: staging tables for the two inputs, their landing tables and per-date load manifests.
-- Conventions (all tables): dates are UTC days; timestamps are UTC DATETIME2 without offset;
-- *_landing tables hold one load (load_id) between bulk load and the atomic swap into staging;
-- ids (company_id, event_id) use a binary collation: 'ACME' and 'acme' are two companies, as
-- in the embedded engine (Azure SQL's default collation would make them collide).

-- One row per (snapshot_date, company_id): the validated CRM snapshot of that date.
CREATE TABLE stg.crm_companies (
    snapshot_date DATE NOT NULL,
    company_id NVARCHAR(64) COLLATE Latin1_General_100_BIN2 NOT NULL,
    company_name NVARCHAR(400) NULL,
    country NVARCHAR(100) NULL,
    industry_tag NVARCHAR(200) NULL,
    last_contact_at DATETIME2(6) NULL,
    -- sha256 of the four attributes, computed by the validator (shared/rules/crm_rows.py):
    -- dim.companies compares versions by it, which is NULL-safe by construction.
    attributes_hash NVARCHAR(64) NOT NULL,
    source_blob NVARCHAR(1024) NOT NULL,
    -- Record number in the file, the header being record 1 (the de-duplication key: last wins).
    source_row INT NOT NULL,
    ingested_at DATETIME2(6) NOT NULL,
    run_id NVARCHAR(64) NOT NULL,
    PRIMARY KEY (snapshot_date, company_id)
);

CREATE TABLE stg.crm_companies_landing (
    load_id NVARCHAR(64) NOT NULL,
    snapshot_date DATE NOT NULL,
    company_id NVARCHAR(64) COLLATE Latin1_General_100_BIN2 NOT NULL,
    company_name NVARCHAR(400) NULL,
    country NVARCHAR(100) NULL,
    industry_tag NVARCHAR(200) NULL,
    last_contact_at DATETIME2(6) NULL,
    attributes_hash NVARCHAR(64) NOT NULL,
    source_row INT NOT NULL
);

-- One row per staged CRM snapshot date: what was loaded, from where, with which content hash.
CREATE TABLE stg.crm_snapshots (
    snapshot_date DATE NOT NULL PRIMARY KEY,
    source_blob NVARCHAR(1024) NOT NULL,
    content_hash NVARCHAR(64) NOT NULL,
    row_count INT NOT NULL,
    rejected_row_count INT NOT NULL,
    duplicate_row_count INT NOT NULL,
    ingested_at DATETIME2(6) NOT NULL,
    run_id NVARCHAR(64) NOT NULL
);

-- One row per (activity_date, company_id): the validated usage of that day.
CREATE TABLE stg.product_usage (
    activity_date DATE NOT NULL,
    company_id NVARCHAR(64) COLLATE Latin1_General_100_BIN2 NOT NULL,
    active_users INT NOT NULL,
    events BIGINT NOT NULL,
    source_blob NVARCHAR(1024) NOT NULL,
    ingested_at DATETIME2(6) NOT NULL,
    run_id NVARCHAR(64) NOT NULL,
    PRIMARY KEY (activity_date, company_id)
);

CREATE TABLE stg.product_usage_landing (
    load_id NVARCHAR(64) NOT NULL,
    activity_date DATE NOT NULL,
    company_id NVARCHAR(64) COLLATE Latin1_General_100_BIN2 NOT NULL,
    active_users INT NOT NULL,
    events BIGINT NOT NULL,
    source_blob NVARCHAR(1024) NOT NULL
);

-- One row per staged usage date: the pull it came from and what the API reported.
-- api_record_count counts every record the API returned (all pages), so
-- api = staged + rejected + duplicate + conflicting; content_hash is the usage input's version.
CREATE TABLE stg.usage_pulls (
    activity_date DATE NOT NULL PRIMARY KEY,
    raw_blob NVARCHAR(1024) NOT NULL,
    content_hash NVARCHAR(64) NOT NULL,
    page_count INT NOT NULL,
    api_record_count INT NOT NULL,
    staged_row_count INT NOT NULL,
    rejected_record_count INT NOT NULL,
    duplicate_record_count INT NOT NULL,
    conflicting_record_count INT NOT NULL,
    fetched_at DATETIME2(6) NOT NULL,
    ingested_at DATETIME2(6) NOT NULL,
    run_id NVARCHAR(64) NOT NULL
);

-- Prefix maximum of activity, so days_since_last_activity never scans history:
-- for each month start M, the last day before M with usage, per company. Derived from
-- stg.product_usage only (refreshed from the month of a re-staged day onward).
CREATE TABLE stg.company_activity_checkpoints (
    checkpoint_date DATE NOT NULL,
    company_id NVARCHAR(64) COLLATE Latin1_General_100_BIN2 NOT NULL,
    last_active_date DATE NOT NULL,
    PRIMARY KEY (checkpoint_date, company_id)
);

-- First day each company appeared in usage (any row, active or not), for "known since".
CREATE TABLE stg.company_first_usage (
    company_id NVARCHAR(64) COLLATE Latin1_General_100_BIN2 NOT NULL PRIMARY KEY,
    first_usage_date DATE NOT NULL
);

-- Which usage pulls (stg.usage_pulls versions) the two derived tables above reflect. A pull
-- whose content_hash or ingested_at differs from its row here is "not yet refreshed": the
-- builder refreshes checkpoints and first usage from the earliest such date before it builds,
-- so a build never reads a derived table older than staging (whoever staged, in whatever order).
CREATE TABLE stg.company_activity_refreshed_pulls (
    activity_date DATE NOT NULL PRIMARY KEY,
    content_hash NVARCHAR(64) NOT NULL,
    ingested_at DATETIME2(6) NOT NULL,
    refreshed_at DATETIME2(6) NOT NULL,
    run_id NVARCHAR(64) NOT NULL
);
