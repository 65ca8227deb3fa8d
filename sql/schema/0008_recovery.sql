-- Purpose: what fault recovery needs: a heartbeat on every running step (a step whose heartbeat
-- is older than RUN_LEASE_MINUTES was killed and is marked 'abandoned'), and a record of every
-- poisoned input and what became of it.

-- Set when a step starts and refreshed while it works; NULL for rows written before 0008.
ALTER TABLE ops.pipeline_runs ADD heartbeat_at DATETIME2(6) NULL;

-- One row per poisoned input: a CRM blob version the blob trigger gave up on, a build message
-- moved to the build poison queue, a CRM blob version that was never staged. subject says which
-- (container/blob@ETag, or the dates of a build message; dates / date_from / date_to the dates it
-- concerns); status is 'poisoned' until the sweep or an operator
-- requeues it ('requeued'), finds it done by other means ('recovered') or drops it ('dropped').
CREATE TABLE ops.poison_events (
    subject NVARCHAR(1024) NOT NULL,
    kind NVARCHAR(16) NOT NULL,
    source_queue NVARCHAR(128) NOT NULL,
    dates NVARCHAR(400) NULL,
    date_from DATE NULL,
    date_to DATE NULL,
    status NVARCHAR(16) NOT NULL,
    detected_at DATETIME2(6) NOT NULL,
    run_id NVARCHAR(64) NOT NULL,
    resolved_at DATETIME2(6) NULL,
    resolved_run_id NVARCHAR(64) NULL,
    note NVARCHAR(2000) NULL
);

CREATE INDEX ix_poison_events_subject ON ops.poison_events (subject, status);

-- One row per CRM blob version (container/blob, ETag) the blob trigger or the recovery sweep
-- finished with: staged, unchanged, rejected or superseded (overwritten before it was read). A
-- blob whose current ETag has no row here was never processed (its trigger was poisoned or
-- lost); the timer's sweep stages it.
CREATE TABLE ops.crm_blob_versions (
    source_blob NVARCHAR(1024) NOT NULL,
    etag NVARCHAR(128) NOT NULL,
    status NVARCHAR(16) NOT NULL,
    snapshot_date DATE NULL,
    content_hash NVARCHAR(64) NULL,
    processed_at DATETIME2(6) NOT NULL,
    run_id NVARCHAR(64) NOT NULL
);

CREATE INDEX ix_crm_blob_versions_blob ON ops.crm_blob_versions (source_blob, etag);
