-- Purpose: the events rollup refresh (agg/company_daily_events__refresh.sql) now adds the events
--   that new rows bring to most company-days' stored counts instead of recounting them, and
--   recounts whole only the company-days that rows of its look-back touch. Its work table says
--   which of the two each changed count is.
-- is_increment: 1 = event_count is added to the stored count (NULL stored: the row is new);
--   0 = event_count replaces it (0: the company-day is deleted). NULL only for rows written
--   before this migration, none of which outlive their refresh.
ALTER TABLE agg.company_daily_events_refresh_counts ADD is_increment BIT NULL;
