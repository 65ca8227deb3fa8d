-- Purpose: a work table for the events rollup refresh (agg/company_daily_events__refresh.sql):
--   the recount of one refresh (run_id), computed once and then merged into
--   agg.company_daily_events. Merging updates the company-days that exist in place and inserts
--   only the new ones, instead of deleting and re-inserting every row of the recomputed days:
--   on DuckDB a delete from a table with a primary key must first load that key's whole index
--   (55M company-days over two years: ~5-20 s per refresh, more than the recount itself).
-- Grain: one row per (run_id, activity_date, company_id); rows live for one refresh.
-- No primary key: the recount's GROUP BY gives the grain, and the rows are deleted at the end of
--   every refresh (an index would cost that delete more than it saves).
CREATE TABLE agg.company_daily_events_refresh_counts (
    run_id NVARCHAR(64) NOT NULL,
    activity_date DATE NOT NULL,
    company_id NVARCHAR(64) COLLATE Latin1_General_100_BIN2 NOT NULL,
    event_count BIGINT NOT NULL
);

CREATE INDEX ix_company_daily_events_refresh_counts
ON agg.company_daily_events_refresh_counts (run_id, activity_date, company_id, event_count);
