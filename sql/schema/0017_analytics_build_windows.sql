-- Purpose: a work table for long range builds (sql/analytics/company_daily_activity_windows__compute.sql):
--   the rolling-window values of one build (run_id), computed once over the whole range on a
--   dense company x day grid with window frames, then read by each run of
--   sql/analytics/company_daily_activity__build.sql instead of its per-run fan-out GROUP BY
--   (which pays the 27 days of window context again for every run of ~10 days).
-- Grain: one row per (run_id, activity_date, company_id) for the companies with a usage row in
--   the range's window context; a company-day without a row has zero windows and no last
--   active day in the read (the build COALESCEs). Rows live for one build: the builder deletes
--   them when its last part commits, and the sweep of dead runs deletes a killed build's rows.
-- No primary key: the window query gives the grain, and an index would cost the insert and the
--   delete more than the reads by date save.
CREATE TABLE analytics.company_daily_activity_windows (
    run_id NVARCHAR(64) NOT NULL,
    activity_date DATE NOT NULL,
    company_id NVARCHAR(64) COLLATE Latin1_General_100_BIN2 NOT NULL,
    active_users_7d INT NOT NULL,
    events_7d BIGINT NOT NULL,
    active_days_7d INT NOT NULL,
    events_prev_7d BIGINT NOT NULL,
    active_users_28d INT NOT NULL,
    events_28d BIGINT NOT NULL,
    active_days_28d INT NOT NULL,
    last_active_read DATE NULL
);

CREATE INDEX ix_company_daily_activity_windows
ON analytics.company_daily_activity_windows (run_id, activity_date, company_id);
