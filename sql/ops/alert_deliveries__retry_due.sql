-- Purpose: failed alert deliveries still worth another attempt (the timer retries them).
-- Grain: one row per failed delivery with fewer than @max_attempts attempts, oldest first.
-- Parameters: @max_attempts (INT), @limit (INT).
SELECT TOP (@limit)
    delivery_id,
    alert_key,
    pipeline,
    step,
    severity,
    alert_date,
    subject,
    run_id,
    title,
    message,
    facts_json,
    status,
    attempts,
    last_error_type,
    first_attempt_at,
    last_attempt_at
FROM ops.alert_deliveries
WHERE status = 'failed' AND attempts < @max_attempts
ORDER BY first_attempt_at ASC, delivery_id ASC;
