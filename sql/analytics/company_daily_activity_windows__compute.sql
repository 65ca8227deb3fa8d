-- Purpose: the rolling-window values of every day of @date_from..@date_to, computed once for a
--   long range build (SPEC section 4) and landed in analytics.company_daily_activity_windows for
--   the runs of sql/analytics/company_daily_activity__build.sql to read (@run_id's rows).
--   - Dense grid, window frames: every company with a usage row in the read x every day of the
--     read, missing days 0, so a ROWS frame of 7 (28) rows is the calendar window D-6..D
--     (D-27..D) and the 7 rows before the last 7 are D-13..D-7. The window context (27 days
--     before @date_from) is paid once for the whole range: the build's own fan-out GROUP BY pays
--     it per run of ~10 days (each usage row joined to ~28 build days), which costs about four
--     times this over a year.
--   - The read starts at the earlier of @date_from's month start and its D-27, as the build's
--     own read does: last_active_read, the last active day (active_users > 0 OR events > 0) from
--     the read's first day up to D, covers D's month to date, so the build falls back to the
--     month's checkpoint exactly when it does with its fan-out.
--   - Rows of companies without usage in the read are not stored (all windows 0, nothing read):
--     the build COALESCEs them.
--   - Inserted as the window operator gives them (by company), not sorted by date: sorting the
--     range's rows costs more (DuckDB, 20,000 companies x 365 days: 6 of 22 CPU seconds, and
--     0.5 GB) than every run's scan of them (0.1 s each).
-- Grain: one row per (activity_date, company_id) of the range, for companies with usage in the read.
-- Parameters: @run_id (the build's), @date_from, @date_to (DATE, the range).
WITH

digits AS (
    SELECT digit
    FROM (VALUES (0), (1), (2), (3), (4), (5), (6), (7), (8), (9)) AS v(digit)
),

day_offsets AS (
    SELECT ones.digit + 10 * tens.digit + 100 * hundreds.digit + 1000 * thousands.digit AS day_offset
    FROM digits AS ones
    CROSS JOIN digits AS tens
    CROSS JOIN digits AS hundreds
    CROSS JOIN digits AS thousands
),

bounds AS (
    SELECT
        CASE
            WHEN DATEFROMPARTS(YEAR(@date_from), MONTH(@date_from), 1) < DATEADD(DAY, -27, CAST(@date_from AS DATE))
                THEN DATEFROMPARTS(YEAR(@date_from), MONTH(@date_from), 1)
            ELSE DATEADD(DAY, -27, CAST(@date_from AS DATE))
        END AS read_from,
        CAST(@date_to AS DATE) AS date_to
),

read_days AS (
    SELECT DATEADD(DAY, day_offsets.day_offset, bounds.read_from) AS activity_date
    FROM bounds
    INNER JOIN day_offsets
        ON day_offsets.day_offset <= DATEDIFF(DAY, bounds.read_from, bounds.date_to)
),

-- Usage of the read: the bounds written out from the parameters (not joined from `bounds`) so
-- the engine skips the rest of history when it scans.
usage_rows AS (
    SELECT
        usage_rows.activity_date,
        usage_rows.company_id,
        usage_rows.active_users,
        usage_rows.events
    FROM stg.product_usage AS usage_rows
    WHERE
        usage_rows.activity_date <= CAST(@date_to AS DATE)
        AND usage_rows.activity_date >= CASE
            WHEN DATEFROMPARTS(YEAR(@date_from), MONTH(@date_from), 1) < DATEADD(DAY, -27, CAST(@date_from AS DATE))
                THEN DATEFROMPARTS(YEAR(@date_from), MONTH(@date_from), 1)
            ELSE DATEADD(DAY, -27, CAST(@date_from AS DATE))
        END
),

companies AS (
    SELECT DISTINCT usage_rows.company_id
    FROM usage_rows
),

grid AS (
    SELECT
        read_days.activity_date,
        companies.company_id,
        COALESCE(usage_rows.active_users, 0) AS active_users,
        COALESCE(usage_rows.events, 0) AS events
    FROM companies
    CROSS JOIN read_days
    LEFT JOIN usage_rows
        ON
            read_days.activity_date = usage_rows.activity_date
            AND companies.company_id = usage_rows.company_id
),

windowed AS (
    SELECT
        activity_date,
        company_id,
        SUM(active_users) OVER (
            PARTITION BY company_id ORDER BY activity_date ROWS BETWEEN 6 PRECEDING AND CURRENT ROW
        ) AS active_users_7d,
        SUM(events) OVER (
            PARTITION BY company_id ORDER BY activity_date ROWS BETWEEN 6 PRECEDING AND CURRENT ROW
        ) AS events_7d,
        SUM(CASE WHEN active_users > 0 THEN 1 ELSE 0 END) OVER (
            PARTITION BY company_id ORDER BY activity_date ROWS BETWEEN 6 PRECEDING AND CURRENT ROW
        ) AS active_days_7d,
        SUM(events) OVER (
            PARTITION BY company_id ORDER BY activity_date ROWS BETWEEN 13 PRECEDING AND 7 PRECEDING
        ) AS events_prev_7d,
        SUM(active_users) OVER (
            PARTITION BY company_id ORDER BY activity_date ROWS BETWEEN 27 PRECEDING AND CURRENT ROW
        ) AS active_users_28d,
        SUM(events) OVER (
            PARTITION BY company_id ORDER BY activity_date ROWS BETWEEN 27 PRECEDING AND CURRENT ROW
        ) AS events_28d,
        SUM(CASE WHEN active_users > 0 THEN 1 ELSE 0 END) OVER (
            PARTITION BY company_id ORDER BY activity_date ROWS BETWEEN 27 PRECEDING AND CURRENT ROW
        ) AS active_days_28d,
        MAX(CASE WHEN active_users > 0 OR events > 0 THEN activity_date END) OVER (
            PARTITION BY company_id ORDER BY activity_date ROWS UNBOUNDED PRECEDING
        ) AS last_active_read
    FROM grid
)

INSERT INTO analytics.company_daily_activity_windows (
    run_id,
    activity_date,
    company_id,
    active_users_7d,
    events_7d,
    active_days_7d,
    events_prev_7d,
    active_users_28d,
    events_28d,
    active_days_28d,
    last_active_read
)
SELECT
    @run_id AS run_id,
    activity_date,
    company_id,
    active_users_7d,
    events_7d,
    active_days_7d,
    events_prev_7d,
    active_users_28d,
    events_28d,
    active_days_28d,
    last_active_read
FROM windowed
WHERE activity_date >= CAST(@date_from AS DATE);
