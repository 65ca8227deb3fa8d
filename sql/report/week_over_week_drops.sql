-- Purpose: the companies whose events fell most week over week on one day, for the run report:
--   events_7d (D-6..D) against events_prev_7d (D-13..D-7), largest absolute drop first (ties:
--   company_id), with the table's own events_7d_change_pct. Only companies whose events fell.
-- Grain: one row per company, at most @top_n rows, for @as_of.
-- Parameters: @as_of (DATE: the activity_date compared), @top_n (INT).
WITH

drops AS (
    SELECT
        company_id,
        company_name,
        country,
        industry_tag,
        events_7d,
        events_prev_7d,
        events_prev_7d - events_7d AS events_drop,
        events_7d_change_pct,
        active_users_7d,
        is_churn_risk,
        ROW_NUMBER() OVER (ORDER BY events_prev_7d - events_7d DESC, company_id) AS drop_rank
    FROM analytics.company_daily_activity
    WHERE activity_date = @as_of AND events_7d < events_prev_7d
)

SELECT
    drop_rank,
    company_id,
    company_name,
    country,
    industry_tag,
    events_7d,
    events_prev_7d,
    events_drop,
    events_7d_change_pct,
    active_users_7d,
    is_churn_risk
FROM drops
WHERE drop_rank <= @top_n
ORDER BY drop_rank;
