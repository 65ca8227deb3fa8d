-- Purpose: what is staged for one CRM snapshot date (the idempotency check: same content hash
--   means the file is already staged).
-- Grain: at most one row (stg.crm_snapshots is keyed by snapshot_date).
-- Parameters: @snapshot_date.
SELECT
    snapshot_date,
    source_blob,
    content_hash,
    row_count,
    rejected_row_count,
    duplicate_row_count,
    run_id
FROM stg.crm_snapshots
WHERE snapshot_date = @snapshot_date;
