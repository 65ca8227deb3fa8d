-- Purpose: raw product events and their incremental daily rollup (the slow-dashboard fix).

-- Raw events as delivered: duplicates by event_id are expected (at-least-once producers), so
-- there is no key; the rollup de-duplicates. event_ts is UTC (offsets converted on load) and
-- event_date is its UTC day, so a day's refresh reads one index range.
CREATE TABLE agg.fact_events (
    event_id NVARCHAR(64) NOT NULL,
    company_id NVARCHAR(64) NOT NULL,
    event_ts DATETIME2(6) NOT NULL,
    event_date DATE NOT NULL,
    loaded_at DATETIME2(6) NOT NULL
);

CREATE INDEX ix_fact_events_date ON agg.fact_events (event_date, company_id, event_id);

-- Grain: one row per (activity_date, company_id): distinct events that day (UTC).
CREATE TABLE agg.company_daily_events (
    activity_date DATE NOT NULL,
    company_id NVARCHAR(64) NOT NULL,
    event_count BIGINT NOT NULL,
    refreshed_at DATETIME2(6) NOT NULL,
    run_id NVARCHAR(64) NOT NULL,
    PRIMARY KEY (activity_date, company_id)
);
