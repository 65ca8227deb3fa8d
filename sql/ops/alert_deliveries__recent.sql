-- Purpose: the most recent alert deliveries, newest first (operator CLI "alerts").
-- Grain: one row per delivery; filtered by status, step and alert date when given.
-- Parameters: @status (NVARCHAR or NULL), @step (NVARCHAR or NULL), @alert_date (DATE or NULL),
--   @limit (INT).
SELECT TOP (@limit)
    delivery_id,
    pipeline,
    step,
    severity,
    alert_date,
    subject,
    run_id,
    title,
    message,
    status,
    attempts,
    last_error_type,
    first_attempt_at,
    last_attempt_at
FROM ops.alert_deliveries
WHERE
    (@status IS NULL OR status = @status)
    AND (@step IS NULL OR step = @step)
    AND (@alert_date IS NULL OR alert_date = CAST(@alert_date AS DATE))
ORDER BY last_attempt_at DESC, delivery_id DESC;
