-- Purpose: the already-built dates AFTER the rolling windows of a changed range whose rows
-- still depend on it. A change on day D moves the windows of D..D+@window_days-1 (rebuilt
-- anyway), but also days_since_last_activity and "known since" on every later day until the
-- company's next activity, however far ahead; without these dates, a late correction (or a
-- late CRM snapshot that moves a company's first appearance) would leave later rows stale and
-- builds in different orders would disagree.
-- A later row (X, c) must be rebuilt when, for the re-staged range [@changed_from, @changed_to]:
--   * its stored last activity day lies in the range and c has no activity there any more, or
--   * c now has activity in the range after its stored last activity (or it had none), or
--   * its window is all zeros and its stored churn flag disagrees with "known since D-6"
--     computed from the refreshed dims and first-usage table (a first appearance moved).
-- Run it after the derived usage tables are refreshed, in the build's transaction. The rows'
-- values are still computed from staging only; this query only picks dates.
-- Grain: one row per activity_date, ascending.
-- Parameters: @changed_from, @changed_to (DATE, a contiguous range of changed dates),
--   @window_days (INT, the widest rolling window: the dates up to @changed_to + @window_days - 1
--   are rebuilt as window neighbours already).
WITH usage_in_range AS (
    SELECT
        company_id,
        MAX(CASE WHEN active_users > 0 OR events > 0 THEN activity_date END) AS last_active_in_range
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
    WHERE activity_date > DATEADD(DAY, @window_days - 1, CAST(@changed_to AS DATE))
),

first_known AS (
    SELECT
        company_id,
        MIN(known_from) AS known_from
    FROM (
        SELECT
            company_id,
            MIN(valid_from) AS known_from
        FROM dim.companies
        GROUP BY company_id
        UNION ALL
        SELECT
            company_id,
            first_usage_date AS known_from
        FROM stg.company_first_usage
    ) AS known
    GROUP BY company_id
),

lost_last_activity AS (
    SELECT lr.activity_date
    FROM later_rows AS lr
    LEFT JOIN stg.product_usage AS still
        ON
            lr.company_id = still.company_id
            AND lr.stored_last_active = still.activity_date
            AND (still.active_users > 0 OR still.events > 0)
    WHERE
        lr.stored_last_active BETWEEN @changed_from AND @changed_to
        AND still.company_id IS NULL
),

gained_later_activity AS (
    SELECT lr.activity_date
    FROM later_rows AS lr
    INNER JOIN usage_in_range AS ur ON lr.company_id = ur.company_id
    WHERE
        ur.last_active_in_range IS NOT NULL
        AND (lr.stored_last_active IS NULL OR lr.stored_last_active < ur.last_active_in_range)
),

known_since_moved AS (
    SELECT cda.activity_date
    FROM analytics.company_daily_activity AS cda
    LEFT JOIN first_known AS fk ON cda.company_id = fk.company_id
    WHERE
        cda.activity_date > DATEADD(DAY, @window_days - 1, CAST(@changed_to AS DATE))
        AND cda.active_users_7d = 0
        AND cda.events_7d = 0
        AND cda.is_churn_risk <> CASE
            WHEN fk.known_from <= DATEADD(DAY, -6, cda.activity_date) THEN CAST(1 AS BIT)
            ELSE CAST(0 AS BIT)
        END
)

SELECT DISTINCT affected.activity_date
FROM (
    SELECT activity_date FROM lost_last_activity
    UNION ALL
    SELECT activity_date FROM gained_later_activity
    UNION ALL
    SELECT activity_date FROM known_since_moved
) AS affected
ORDER BY affected.activity_date;
