-- Purpose: when each CRM file was last handled, from the records that predate
--   ops.crm_blob_versions: a staged snapshot (handles its blob, and supersedes any older file of
--   its date) and a quarantine record (handles its blob only). The recovery sweep leaves a blob
--   alone when it was handled after it was last written.
-- Grain: one row per staged snapshot date and per quarantine record.
-- Parameters: none.
SELECT
    source_blob,
    snapshot_date,
    ingested_at AS handled_at
FROM stg.crm_snapshots
UNION ALL
SELECT
    source_blob,
    NULL AS snapshot_date,
    quarantined_at AS handled_at
FROM ops.quarantined_files;
