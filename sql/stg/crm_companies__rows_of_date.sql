-- Purpose: the CRM rows staged for one snapshot date, to compare with its CRM file (operator
--   replay: lost or altered staged rows are found by content, not by the recorded version).
-- Grain: one row per (snapshot_date, company_id) of @snapshot_date.
-- Parameters: @snapshot_date.
SELECT
    company_id,
    attributes_hash
FROM stg.crm_companies
WHERE snapshot_date = @snapshot_date;
