-- Purpose: record the extra header columns a CRM file carried and staging ignored. A
--   re-delivery of the same content replaces its row (at-least-once delivery leaves one row).
-- Grain: ops.crm_ignored_columns one row per (source_blob, content_hash).
-- Parameters: @source_blob, @content_hash, @snapshot_date, @column_names (comma-separated),
--   @recorded_at, @run_id.
DELETE FROM ops.crm_ignored_columns
WHERE source_blob = @source_blob AND content_hash = @content_hash;

INSERT INTO ops.crm_ignored_columns (
    source_blob, content_hash, snapshot_date, column_names, recorded_at, run_id
)
VALUES (@source_blob, @content_hash, @snapshot_date, @column_names, @recorded_at, @run_id);
