-- Purpose: the stored freshness of the dates in a range (what the previous tick found), so the
--   next evaluation keeps first_missed_at / alerted_at and never alerts a (date, input) twice.
-- Grain: one row per (activity_date, input_name).
-- Parameters: @date_from, @date_to (DATE, inclusive).
SELECT
    activity_date,
    input_name,
    status,
    due_at,
    arrived_at,
    first_missed_at,
    alerted_at,
    resolved_at,
    checked_at,
    run_id
FROM ops.input_freshness
WHERE activity_date BETWEEN CAST(@date_from AS DATE) AND CAST(@date_to AS DATE)
ORDER BY activity_date, input_name;
