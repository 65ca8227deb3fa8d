-- Purpose: remove the landing rows of one load and date after a failed staging attempt, so a
--   retry starts clean (landing rows never reach stg.product_usage except through __load).
-- Grain: stg.product_usage_landing rows of (@load_id, @activity_date).
-- Parameters: @load_id, @activity_date.

DELETE FROM stg.product_usage_landing
WHERE load_id = @load_id AND activity_date = @activity_date;
