-- Purpose: the already-built dates AFTER the 7-day windows of a re-staged range whose rows
-- still depend on it. A change on day D moves the windows of D..D+6 (rebuilt anyway), but
-- also days_since_last_activity and "known since" on every later day until the company's next
-- activity, however far ahead. SPEC 4 names only D..D+6; without these dates, a late
-- correction would leave later rows stale and builds in different orders would disagree.
-- A later row (X, c) must be rebuilt when, for the re-staged range [@changed_from, @changed_to]:
--   * its stored last activity day lies in the range and c has no activity there any more, or
--   * c now has activity in the range after its stored last activity (or it had none), or
--   * c now appears in usage in the range before it was first known, or its first appearance
--     was in the range and is gone (churn's "known since" moved).
-- The rows' values are still computed from staging only; this query only picks dates.
-- Grain: one row per activity_date, ascending.
-- Parameters: @changed_from, @changed_to (DATE, a contiguous range of re-staged dates).
WITH usage_in_range AS (
    SELECT
        company_id,
        MAX(CASE WHEN active_users > 0 OR events > 0 THEN activity_date END) AS last_active_in_range,
        MIN(activity_date) AS first_seen_in_range
    FROM stg.product_usage
    WHERE activity_date BETWEEN @changed_from AND @changed_to
    GROUP BY company_id
),

later_rows AS (
    SELECT
        activity_date,
        company_id,
        DATEADD(DAY, -days_since_last_activity, activity_date) AS stored_last_active
    FROM analytics.company_daily_activity
    WHERE activity_date > DATEADD(DAY, 6, CAST(@changed_to AS DATE))
),

first_known AS (
    SELECT
        company_id,
        MIN(known_from) AS known_from
    FROM (
        SELECT company_id, MIN(valid_from) AS known_from FROM dim.companies GROUP BY company_id
        UNION ALL
        SELECT company_id, first_usage_date AS known_from FROM stg.company_first_usage
    ) AS known
    GROUP BY company_id
),

lost_last_activity AS (
    SELECT lr.activity_date
    FROM later_rows AS lr
    LEFT JOIN stg.product_usage AS still
        ON still.company_id = lr.company_id
        AND still.activity_date = lr.stored_last_active
        AND (still.active_users > 0 OR still.events > 0)
    WHERE lr.stored_last_active BETWEEN @changed_from AND @changed_to
        AND still.company_id IS NULL
),

gained_later_activity AS (
    SELECT lr.activity_date
    FROM later_rows AS lr
    INNER JOIN usage_in_range AS ur ON ur.company_id = lr.company_id
    WHERE ur.last_active_in_range IS NOT NULL
        AND (lr.stored_last_active IS NULL OR lr.stored_last_active < ur.last_active_in_range)
),

known_earlier AS (
    -- Before the build refreshes stg.company_first_usage, it still holds the old first day.
    SELECT lr.activity_date
    FROM later_rows AS lr
    INNER JOIN usage_in_range AS ur ON ur.company_id = lr.company_id
    LEFT JOIN first_known AS fk ON fk.company_id = lr.company_id
    WHERE (fk.known_from IS NULL OR fk.known_from > ur.first_seen_in_range)
        AND lr.activity_date <= DATEADD(DAY, 6, COALESCE(fk.known_from, lr.activity_date))
),

known_later AS (
    -- Its first appearance was in the range and no usage row is left there: it is now known
    -- from its next CRM version or usage row, so churn may flip on the 6 days after that.
    SELECT lr.activity_date
    FROM later_rows AS lr
    INNER JOIN first_known AS fk ON fk.company_id = lr.company_id
    LEFT JOIN usage_in_range AS ur ON ur.company_id = lr.company_id
    WHERE fk.known_from BETWEEN @changed_from AND @changed_to
        AND ur.company_id IS NULL
        AND lr.activity_date <= DATEADD(DAY, 6, (
            SELECT MIN(next_seen.activity_date)
            FROM stg.product_usage AS next_seen
            WHERE next_seen.company_id = lr.company_id
                AND next_seen.activity_date > CAST(@changed_to AS DATE)
        ))
)

SELECT DISTINCT affected.activity_date
FROM (
    SELECT activity_date FROM lost_last_activity
    UNION ALL
    SELECT activity_date FROM gained_later_activity
    UNION ALL
    SELECT activity_date FROM known_earlier
    UNION ALL
    SELECT activity_date FROM known_later
) AS affected
ORDER BY affected.activity_date;
