-- Purpose: poisoned inputs, open ones first, then the latest resolved (status, poison list).
-- Grain: one row per poison record.
-- Parameters: @limit (INT).
SELECT TOP (@limit)
    subject,
    kind,
    source_queue,
    dates,
    date_from,
    date_to,
    status,
    detected_at,
    run_id,
    resolved_at,
    resolved_run_id,
    note
FROM ops.poison_events
ORDER BY CASE WHEN status = 'poisoned' THEN 0 ELSE 1 END, COALESCE(resolved_at, detected_at) DESC, subject;
