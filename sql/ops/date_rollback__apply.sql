-- Purpose: roll back one date: delete its analytics rows and forget its last build, so the next
-- build of the date runs even though its inputs did not change. Staging and dims are kept: a
-- rebuild derives the same rows from them. Run inside the caller's transaction.
-- Grain: one activity_date.
-- Parameters: @activity_date.
DELETE FROM analytics.company_daily_activity
WHERE activity_date = @activity_date;

DELETE FROM ops.date_builds
WHERE activity_date = @activity_date;
