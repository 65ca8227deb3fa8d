-- Purpose: the events rollup refresh (agg/company_daily_events__refresh.sql) now adds the events
--   that new rows bring to most company-days' stored counts instead of recounting them, and
--   recounts whole only the company-days that rows of its look-back touch. Its work table says
--   which of the two each changed count is.
-- is_increment: 1 = event_count is added to the stored count (NULL stored: the row is new);
--   0 = event_count replaces it (0: the company-day is deleted). NULL only for rows written
--   before this migration, none of which outlive their refresh.
ALTER TABLE agg.company_daily_events_refresh_counts ADD is_increment BIT NULL;

-- The refresh reads the rows loaded since the look-back before the watermark in full (the new
-- rows are counted from them), so on Azure SQL the load-time index covers every column; it
-- replaces ix_fact_events_loaded (loaded_at, event_id, event_date), which served only the days
-- they touch.
CREATE INDEX ix_fact_events_loaded_rows
ON agg.fact_events (loaded_at, event_id, event_date, company_id, event_ts);

DROP INDEX ix_fact_events_loaded ON agg.fact_events;
