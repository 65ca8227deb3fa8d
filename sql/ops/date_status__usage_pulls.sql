-- Purpose: the staged usage pulls of a date range, for the operator's status report.
-- Grain: one row per activity_date that has a staged pull.
-- Parameters: @date_from, @date_to (inclusive UTC days).
SELECT
    activity_date,
    raw_blob,
    content_hash,
    api_record_count,
    staged_row_count,
    rejected_record_count,
    duplicate_record_count,
    fetched_at,
    ingested_at,
    run_id
FROM stg.usage_pulls
WHERE activity_date BETWEEN @date_from AND @date_to
ORDER BY activity_date;
