-- Purpose: the outcome of one more attempt to deliver a recorded alert (a retry).
-- Grain: ops.alert_deliveries one row per delivery_id.
-- Parameters: @delivery_id, @status, @attempts, @last_error_type, @attempted_at.
UPDATE ops.alert_deliveries
SET
    status = @status,
    attempts = @attempts,
    last_error_type = @last_error_type,
    last_attempt_at = @attempted_at
WHERE delivery_id = @delivery_id;
