-- Purpose: replace one CRM snapshot date in stg.crm_companies with the rows of one load, record
--   the snapshot in stg.crm_snapshots, and clear the load's landing rows. The caller runs this
--   and dim/companies__scd2 in ONE transaction: a failure leaves the previous snapshot intact.
-- Grain: stg.crm_companies one row per (snapshot_date, company_id);
--   stg.crm_snapshots one row per snapshot_date.
-- Duplicates: a company_id repeated in the file keeps its LAST occurrence (highest source_row,
--   i.e. the latest line: a CRM export appends corrections); the others are counted.
-- Parameters: @load_id, @snapshot_date, @source_blob, @content_hash, @rejected_row_count,
--   @ingested_at, @run_id.
-- Returns: the stg.crm_snapshots row of @snapshot_date.

DELETE FROM stg.crm_companies
WHERE snapshot_date = @snapshot_date;

-- source_row is unique within a load, so the last occurrence is the row with the company's
-- highest source_row. Repeated companies are few (a handful per thousand rows), so they are found
-- first and every landed row is joined to that small set: a row is kept unless its company is
-- repeated and it is not the last occurrence. (Joining every row to every company's maximum
-- built a hash table of the whole load.) The landing table is read twice rather than through a
-- CTE of all its rows (DuckDB would materialise that CTE: a copy of the whole load).
WITH
repeated_companies AS (
    SELECT
        company_id,
        MAX(source_row) AS last_source_row
    FROM stg.crm_companies_landing
    WHERE load_id = @load_id
    GROUP BY company_id
    HAVING COUNT(*) > 1
)

INSERT INTO stg.crm_companies (
    snapshot_date, company_id, company_name, country, industry_tag, last_contact_at,
    attributes_hash, source_blob, source_row, ingested_at, run_id
)
SELECT
    @snapshot_date AS snapshot_date,
    landed.company_id,
    landed.company_name,
    landed.country,
    landed.industry_tag,
    landed.last_contact_at,
    landed.attributes_hash,
    @source_blob AS source_blob,
    landed.source_row,
    @ingested_at AS ingested_at,
    @run_id AS run_id
FROM stg.crm_companies_landing AS landed
LEFT JOIN repeated_companies AS repeated
    ON landed.company_id = repeated.company_id
WHERE
    landed.load_id = @load_id
    AND (repeated.company_id IS NULL OR landed.source_row = repeated.last_source_row);

DELETE FROM stg.crm_snapshots
WHERE snapshot_date = @snapshot_date;

WITH
staged AS (
    SELECT COUNT(*) AS row_count
    FROM stg.crm_companies
    WHERE snapshot_date = @snapshot_date
),

landed AS (
    SELECT COUNT(*) AS landed_count
    FROM stg.crm_companies_landing
    WHERE load_id = @load_id
)

INSERT INTO stg.crm_snapshots (
    snapshot_date, source_blob, content_hash, row_count, rejected_row_count,
    duplicate_row_count, ingested_at, run_id
)
SELECT
    @snapshot_date AS snapshot_date,
    @source_blob AS source_blob,
    @content_hash AS content_hash,
    staged.row_count,
    @rejected_row_count AS rejected_row_count,
    landed.landed_count - staged.row_count AS duplicate_row_count,
    @ingested_at AS ingested_at,
    @run_id AS run_id
FROM staged
CROSS JOIN landed;

DELETE FROM stg.crm_companies_landing
WHERE load_id = @load_id;

SELECT
    snapshot_date,
    content_hash,
    row_count,
    rejected_row_count,
    duplicate_row_count
FROM stg.crm_snapshots
WHERE snapshot_date = @snapshot_date;
