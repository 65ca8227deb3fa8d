-- Purpose: stg.crm_companies keeps one row per (snapshot_date, company_id) by a UNIQUE
--   CLUSTERED INDEX instead of a PRIMARY KEY. On Azure SQL the two are the same structure
--   (same seeks and scans, same refusal of a repeated key). On DuckDB the index is not created
--   (shared/adapters/warehouse/translate.py says why): its key index made loading a 1M-row
--   snapshot cost twice what it costs unkeyed, and deleting one (a re-upload of a date) ~20
--   CPU-s instead of 0.02 s. There the grain is kept by construction (crm_companies__load.sql
--   keeps each company's last occurrence and replaces a date in one transaction) and verified
--   after every build by the stg_crm duplicate_keys check (sql/checks/duplicate_keys.sql).
-- How: the table is rebuilt without the key (an unnamed PRIMARY KEY cannot be dropped by name
--   in T-SQL without dynamic SQL), its rows copied, the old table dropped and the new one
--   renamed; the index is created last, over the copied rows. Nothing else refers to the table
--   by object id (no view, foreign key or index besides its key).
-- Columns: as in 0002_staging.sql.

CREATE TABLE stg.crm_companies_unkeyed (
    snapshot_date DATE NOT NULL,
    company_id NVARCHAR(64) COLLATE Latin1_General_100_BIN2 NOT NULL,
    company_name NVARCHAR(400) NULL,
    country NVARCHAR(100) NULL,
    industry_tag NVARCHAR(200) NULL,
    last_contact_at DATETIME2(6) NULL,
    attributes_hash NVARCHAR(64) NOT NULL,
    source_blob NVARCHAR(1024) NOT NULL,
    source_row INT NOT NULL,
    ingested_at DATETIME2(6) NOT NULL,
    run_id NVARCHAR(64) NOT NULL
);

INSERT INTO stg.crm_companies_unkeyed (
    snapshot_date, company_id, company_name, country, industry_tag, last_contact_at,
    attributes_hash, source_blob, source_row, ingested_at, run_id
)
SELECT
    snapshot_date,
    company_id,
    company_name,
    country,
    industry_tag,
    last_contact_at,
    attributes_hash,
    source_blob,
    source_row,
    ingested_at,
    run_id
FROM stg.crm_companies;

DROP TABLE stg.crm_companies;

EXEC sp_rename 'stg.crm_companies_unkeyed', 'crm_companies';

CREATE UNIQUE CLUSTERED INDEX ux_crm_companies_snapshot_company
ON stg.crm_companies (snapshot_date, company_id);
