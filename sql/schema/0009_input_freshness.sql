-- Purpose: input freshness as evaluated by the usage timer (shared/services/freshness.py): for
--   each recent date and input, when it was due, when it arrived, and the life of a miss (first
--   found missing past its deadline, alerted, resolved by a late arrival). alerted_at is what
--   makes "alert once per (date, input)" hold across ticks and workers.

-- One row per (activity_date, input_name). input_name is 'crm' or 'usage'. status is waiting
-- (not yet due), on_time, late (arrived after its deadline), or missing (past its deadline).
CREATE TABLE ops.input_freshness (
    activity_date DATE NOT NULL,
    input_name NVARCHAR(16) NOT NULL,
    status NVARCHAR(16) NOT NULL,
    due_at DATETIME2(6) NOT NULL,
    arrived_at DATETIME2(6) NULL,
    first_missed_at DATETIME2(6) NULL,
    alerted_at DATETIME2(6) NULL,
    resolved_at DATETIME2(6) NULL,
    checked_at DATETIME2(6) NOT NULL,
    run_id NVARCHAR(64) NOT NULL,
    PRIMARY KEY (activity_date, input_name)
);
