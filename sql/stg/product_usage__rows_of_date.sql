-- Purpose: the usage rows staged for one date, to compare with its raw landing (operator replay:
--   lost or altered staged rows are found by content, not by the recorded version).
-- Grain: one row per (activity_date, company_id) of @activity_date.
-- Parameters: @activity_date.
SELECT
    company_id,
    active_users,
    events
FROM stg.product_usage
WHERE activity_date = @activity_date;
