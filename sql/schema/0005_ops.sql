-- Purpose: operational tables: run history, build state, data-quality results, quarantine log.

-- Every function invocation / CLI step: one row per (run_id, step, run_date).
CREATE TABLE ops.pipeline_runs (
    run_id NVARCHAR(64) NOT NULL,
    step NVARCHAR(64) NOT NULL,
    run_date DATE NULL,
    status NVARCHAR(16) NOT NULL,
    trigger_name NVARCHAR(128) NULL,
    rows_in BIGINT NULL,
    rows_out BIGINT NULL,
    started_at DATETIME2(6) NOT NULL,
    finished_at DATETIME2(6) NULL,
    duration_ms BIGINT NULL,
    error_type NVARCHAR(128) NULL,
    error_message NVARCHAR(2000) NULL
);

CREATE INDEX ix_pipeline_runs_run ON ops.pipeline_runs (run_id, step);
CREATE INDEX ix_pipeline_runs_date ON ops.pipeline_runs (run_date, step);

-- The last successful build of each date and the input versions it used (skip-if-unchanged).
CREATE TABLE ops.date_builds (
    activity_date DATE NOT NULL PRIMARY KEY,
    crm_version NVARCHAR(64) NULL,
    usage_version NVARCHAR(64) NULL,
    crm_snapshot_date DATE NULL,
    row_count INT NOT NULL,
    built_at DATETIME2(6) NOT NULL,
    run_id NVARCHAR(64) NOT NULL
);

-- The input versions (from the readiness state) of the dates one build (run_id) rebuilds,
-- loaded before the build and turned into ops.date_builds rows when it commits.
CREATE TABLE ops.date_builds_landing (
    run_id NVARCHAR(64) NOT NULL,
    activity_date DATE NOT NULL,
    crm_version NVARCHAR(64) NULL,
    usage_version NVARCHAR(64) NULL,
    PRIMARY KEY (run_id, activity_date)
);

-- Data-quality results: one row per (run_id, check_date, check_name). status is pass, warn,
-- fail or error (the check itself could not run); severity is what a violation means (warn|fail).
-- offending_rows counts the rows behind a violation; reference_value is what the observation
-- was compared with (the trailing median, the API count); note is a short machine-readable hint.
CREATE TABLE ops.data_quality_results (
    run_id NVARCHAR(64) NOT NULL,
    check_date DATE NOT NULL,
    check_name NVARCHAR(128) NOT NULL,
    severity NVARCHAR(8) NOT NULL,
    status NVARCHAR(8) NOT NULL,
    observed_value FLOAT NULL,
    threshold FLOAT NULL,
    offending_rows BIGINT NULL,
    reference_value FLOAT NULL,
    note NVARCHAR(200) NULL,
    message NVARCHAR(2000) NOT NULL,
    checked_at DATETIME2(6) NOT NULL,
    PRIMARY KEY (run_id, check_date, check_name)
);

CREATE INDEX ix_data_quality_results_date ON ops.data_quality_results (check_date, check_name);

-- Quarantined inputs, with where the copy and its error report live. One row per
-- (source_blob, content_hash): a re-delivered file replaces its row. status is 'rejected' (the
-- whole file) or 'partial' (staged without its rejected rows).
CREATE TABLE ops.quarantined_files (
    source_blob NVARCHAR(1024) NOT NULL,
    content_hash NVARCHAR(64) NOT NULL,
    status NVARCHAR(16) NOT NULL,
    snapshot_date DATE NULL,
    quarantine_blob NVARCHAR(1024) NOT NULL,
    report_blob NVARCHAR(1024) NOT NULL,
    reason NVARCHAR(2000) NOT NULL,
    rejected_row_count INT NOT NULL,
    quarantined_at DATETIME2(6) NOT NULL,
    run_id NVARCHAR(64) NOT NULL
);
