-- Purpose: the quarantined CRM files of a date range (rejected whole, or staged without their
-- rejected rows), for the operator's status report.
-- Grain: one row per (source_blob, content_hash) whose snapshot date lies in the range.
-- Parameters: @date_from, @date_to (inclusive UTC days).
SELECT
    snapshot_date,
    source_blob,
    content_hash,
    status,
    quarantine_blob,
    report_blob,
    reason,
    rejected_row_count,
    quarantined_at,
    run_id
FROM ops.quarantined_files
WHERE snapshot_date BETWEEN @date_from AND @date_to
ORDER BY snapshot_date, quarantined_at, source_blob;
