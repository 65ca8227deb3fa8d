-- Purpose: company attributes over time (SCD type 2), derived from the CRM snapshots.
-- Grain: one row per (company_id, valid_from). valid_to is exclusive (the snapshot date that
-- ended the version) and NULL while open. A company absent from a snapshot has its version
-- closed at that snapshot date; if it comes back, a new version opens.
-- Versions are derived only from the snapshots (stg.crm_companies), so loading snapshots in any
-- order gives the same versions. attributes_hash (sha256 of name, country, industry_tag and
-- last_contact_at) is what "changed" means. A day D is served by the version with
-- valid_from <= D AND (valid_to IS NULL OR valid_to > D).
CREATE TABLE dim.companies (
    company_id NVARCHAR(64) COLLATE Latin1_General_100_BIN2 NOT NULL,
    valid_from DATE NOT NULL,
    valid_to DATE NULL,
    is_current BIT NOT NULL,
    company_name NVARCHAR(400) NULL,
    country NVARCHAR(100) NULL,
    industry_tag NVARCHAR(200) NULL,
    last_contact_at DATETIME2(6) NULL,
    attributes_hash NVARCHAR(64) NOT NULL,
    run_id NVARCHAR(64) NOT NULL,
    PRIMARY KEY (company_id, valid_from)
);

CREATE INDEX ix_companies_valid ON dim.companies (valid_from, valid_to);

-- Work table of sql/dim/companies__scd2.sql: the versions recomputed by one load (load_id),
-- held between computing them and applying the difference to dim.companies, then deleted.
-- No primary key on purpose: the query guarantees the grain (load_id, company_id, valid_from),
-- and on DuckDB a key index made deleting a load's 1M work rows take longer than computing them.
-- Azure SQL gets the index below for its lookups (the embedded engine skips CREATE INDEX).
CREATE TABLE dim.companies_rebuild (
    load_id NVARCHAR(64) NOT NULL,
    company_id NVARCHAR(64) COLLATE Latin1_General_100_BIN2 NOT NULL,
    valid_from DATE NOT NULL,
    valid_to DATE NULL,
    company_name NVARCHAR(400) NULL,
    country NVARCHAR(100) NULL,
    industry_tag NVARCHAR(200) NULL,
    last_contact_at DATETIME2(6) NULL,
    attributes_hash NVARCHAR(64) NOT NULL
);

CREATE INDEX ix_companies_rebuild_load ON dim.companies_rebuild (load_id, company_id, valid_from);
