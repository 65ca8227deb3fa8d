-- Purpose: set a date's rows that carry one flag list to a new list (data-quality checks add or
--   remove their dq_<check> flags). Only the flags column changes: a check never deletes data.
-- Grain: updates rows of (@activity_date, data_quality_flags = @old_flags).
-- Parameters: @activity_date (DATE), @old_flags, @new_flags (NVARCHAR).
UPDATE analytics.company_daily_activity
SET data_quality_flags = @new_flags
WHERE activity_date = CAST(@activity_date AS DATE) AND data_quality_flags = @old_flags;
