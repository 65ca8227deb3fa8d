-- Purpose: every CRM blob version already processed, for the recovery sweep to find the blobs
--   whose current version was not (one row per file and version: small).
-- Grain: one row per (source_blob, etag).
-- Parameters: none.

SELECT
    source_blob,
    etag,
    status
FROM ops.crm_blob_versions;
