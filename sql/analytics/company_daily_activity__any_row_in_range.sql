-- Purpose: whether analytics.company_daily_activity holds any row of a date range: the builder
--   writes a range without rows (the daily build, dates never built) by the INSERT branch of
--   the build SQL's MERGE, which gives the same rows for less. TOP (1): the first row found
--   answers; the date filter lets the engine skip every other date's storage.
-- Grain: one row (any row of the range) or none.
-- Parameters: @date_from, @date_to (DATE).
SELECT TOP (1) activity_date
FROM analytics.company_daily_activity
WHERE activity_date BETWEEN CAST(@date_from AS DATE) AND CAST(@date_to AS DATE);
