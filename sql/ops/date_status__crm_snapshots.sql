-- Purpose: the CRM snapshots an operator's status report needs for a date range: those dated
-- inside the range, plus the latest one before it (the snapshot in force on the first days).
-- Grain: one row per staged snapshot date.
-- Parameters: @date_from, @date_to (inclusive UTC days).
WITH snapshot_before_range AS (
    SELECT MAX(snapshot_date) AS snapshot_date
    FROM stg.crm_snapshots
    WHERE snapshot_date < @date_from
),

snapshots AS (
    SELECT
        s.snapshot_date,
        s.source_blob,
        s.content_hash,
        s.row_count,
        s.rejected_row_count,
        s.duplicate_row_count,
        s.ingested_at,
        s.run_id
    FROM stg.crm_snapshots AS s
    WHERE
        s.snapshot_date <= @date_to
        AND s.snapshot_date >= COALESCE((SELECT b.snapshot_date FROM snapshot_before_range AS b), @date_from)
)

SELECT
    snapshot_date,
    source_blob,
    content_hash,
    row_count,
    rejected_row_count,
    duplicate_row_count,
    ingested_at,
    run_id
FROM snapshots
ORDER BY snapshot_date;
