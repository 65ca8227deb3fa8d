-- Purpose: record one alert handed to the sink and how its delivery ended.
-- Grain: ops.alert_deliveries one row per delivery_id (one send of one alert).
-- Parameters: @delivery_id, @alert_key, @pipeline, @step, @severity, @alert_date, @subject,
--   @run_id, @title, @message, @facts_json, @status, @attempts, @last_error_type, @attempted_at.
INSERT INTO ops.alert_deliveries (
    delivery_id, alert_key, pipeline, step, severity, alert_date, subject, run_id, title, message,
    facts_json, status, attempts, last_error_type, first_attempt_at, last_attempt_at
)
VALUES (
    @delivery_id, @alert_key, @pipeline, @step, @severity, @alert_date, @subject, @run_id, @title,
    @message, @facts_json, @status, @attempts, @last_error_type, @attempted_at, @attempted_at
);
