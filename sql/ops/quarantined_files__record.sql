-- Purpose: record one quarantined CRM file (its copy and error report in the quarantine
--   container). A re-delivery of the same content replaces its row, so at-least-once delivery
--   leaves one row.
-- Grain: ops.quarantined_files one row per (source_blob, content_hash).
-- Parameters: @source_blob, @content_hash, @status ('rejected' | 'partial'), @snapshot_date,
--   @quarantine_blob, @report_blob, @reason, @rejected_row_count, @quarantined_at, @run_id.

DELETE FROM ops.quarantined_files
WHERE source_blob = @source_blob AND content_hash = @content_hash;

INSERT INTO ops.quarantined_files (
    source_blob, content_hash, status, snapshot_date, quarantine_blob, report_blob, reason,
    rejected_row_count, quarantined_at, run_id
)
VALUES (
    @source_blob, @content_hash, @status, @snapshot_date, @quarantine_blob, @report_blob, @reason,
    @rejected_row_count, @quarantined_at, @run_id
);
