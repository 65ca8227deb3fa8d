-- Purpose: record that one CRM blob version was processed (staged, unchanged, rejected or
--   superseded); a re-delivery replaces its row, so at-least-once delivery leaves one row.
-- Grain: ops.crm_blob_versions one row per (source_blob, etag).
-- Parameters: @source_blob, @etag, @status, @snapshot_date, @content_hash, @processed_at, @run_id.

DELETE FROM ops.crm_blob_versions
WHERE source_blob = @source_blob AND etag = @etag;

INSERT INTO ops.crm_blob_versions (source_blob, etag, status, snapshot_date, content_hash, processed_at, run_id)
VALUES (@source_blob, @etag, @status, @snapshot_date, @content_hash, @processed_at, @run_id);
