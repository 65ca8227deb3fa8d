-- Purpose: operator visibility of alerts and of CRM input columns the pipeline ignored.

-- Every alert handed to the sink: one row per send, with how it ended. status is 'sent' (the
-- webhook accepted it), 'suppressed' (the same incident was sent within the de-duplication
-- window), 'failed' (the webhook could not be reached or refused it; retried on the next timer
-- tick until max attempts) or 'log_only' (no webhook configured: the alert is a log record).
-- The alert's own fields are kept so a failed delivery can be sent again as it was.
CREATE TABLE ops.alert_deliveries (
    delivery_id NVARCHAR(64) NOT NULL PRIMARY KEY,
    alert_key NVARCHAR(1000) NOT NULL,
    pipeline NVARCHAR(128) NOT NULL,
    step NVARCHAR(64) NOT NULL,
    severity NVARCHAR(16) NOT NULL,
    alert_date DATE NULL,
    subject NVARCHAR(1024) NULL,
    run_id NVARCHAR(64) NULL,
    title NVARCHAR(400) NOT NULL,
    message NVARCHAR(2000) NOT NULL,
    facts_json NVARCHAR(4000) NULL,
    status NVARCHAR(16) NOT NULL,
    attempts INT NOT NULL,
    last_error_type NVARCHAR(128) NULL,
    first_attempt_at DATETIME2(6) NOT NULL,
    last_attempt_at DATETIME2(6) NOT NULL
);

CREATE INDEX ix_alert_deliveries_status ON ops.alert_deliveries (status, last_attempt_at);
CREATE INDEX ix_alert_deliveries_attempt ON ops.alert_deliveries (last_attempt_at);

-- Header columns of a CRM file that are not part of the contract and were ignored (SPEC 2:
-- "extra columns are ignored and reported"). One row per (source_blob, content_hash).
CREATE TABLE ops.crm_ignored_columns (
    source_blob NVARCHAR(1024) NOT NULL,
    content_hash NVARCHAR(64) NOT NULL,
    snapshot_date DATE NULL,
    column_names NVARCHAR(2000) NOT NULL,
    recorded_at DATETIME2(6) NOT NULL,
    run_id NVARCHAR(64) NOT NULL
);
