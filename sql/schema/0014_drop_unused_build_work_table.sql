-- Purpose: drop analytics.company_daily_activity_build, the keyed work table the build used
--   to stage its rows in before the MERGE. The build now merges straight from its computed rows
--   (sql/analytics/company_daily_activity__build.sql), so nothing reads or writes this table.
DROP TABLE analytics.company_daily_activity_build;
