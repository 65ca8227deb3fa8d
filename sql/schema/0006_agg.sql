-- Purpose: raw product events and their incremental daily rollup (the slow-dashboard fix).

-- Raw events as delivered: duplicates by event_id are expected (at-least-once producers), so
-- there is no key; the rollup de-duplicates. event_ts is UTC (offsets converted on load) and
-- event_date is its UTC day, so a day's refresh reads one index range.
CREATE TABLE agg.fact_events (
    event_id NVARCHAR(64) COLLATE Latin1_General_100_BIN2 NOT NULL,
    company_id NVARCHAR(64) COLLATE Latin1_General_100_BIN2 NOT NULL,
    event_ts DATETIME2(6) NOT NULL,
    event_date DATE NOT NULL,
    loaded_at DATETIME2(6) NOT NULL
);

-- Supporting indexes of the incremental refresh (sql/agg/company_daily_events__refresh.sql),
-- each covering its query with key columns only (the translation layer refuses INCLUDE):
-- a day's events (the recount), an event's copies on any day (de-duplication by event_id), and
-- rows loaded since the last refresh (which days were touched).
CREATE INDEX ix_fact_events_date ON agg.fact_events (event_date, company_id, event_id, loaded_at, event_ts);
CREATE INDEX ix_fact_events_event ON agg.fact_events (event_id, loaded_at, event_ts, company_id, event_date);
CREATE INDEX ix_fact_events_loaded ON agg.fact_events (loaded_at, event_id, event_date);

-- Grain: one row per (activity_date, company_id): distinct events that day (UTC).
CREATE TABLE agg.company_daily_events (
    activity_date DATE NOT NULL,
    company_id NVARCHAR(64) COLLATE Latin1_General_100_BIN2 NOT NULL,
    event_count BIGINT NOT NULL,
    refreshed_at DATETIME2(6) NOT NULL,
    run_id NVARCHAR(64) NOT NULL,
    PRIMARY KEY (activity_date, company_id)
);

-- Work table of one refresh (run_id): the days it recomputes, loaded before the refresh runs.
CREATE TABLE agg.company_daily_events_refresh_days (
    run_id NVARCHAR(64) NOT NULL,
    activity_date DATE NOT NULL,
    PRIMARY KEY (run_id, activity_date)
);

-- How far the rollup has read agg.fact_events: rows loaded after loaded_through are new.
CREATE TABLE agg.rollup_watermarks (
    rollup_name NVARCHAR(64) NOT NULL PRIMARY KEY,
    loaded_through DATETIME2(6) NULL,
    refreshed_at DATETIME2(6) NOT NULL,
    run_id NVARCHAR(64) NOT NULL
);
