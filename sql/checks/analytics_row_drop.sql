-- Check: analytics_row_drop (severity: fail).
-- Purpose: the date's row count must not drop more than @threshold (a share, e.g. 0.10)
--   below the median of the trailing 7 days (D-7..D-1) that have rows. Without history the
--   check passes with note 'no_history'.
-- Grain: one summary row for @check_date: observed_value = drop share (negative = growth),
--   offending_rows = rows missing versus the median, reference_value = the median,
--   note = how many trailing days it was taken over.
-- Parameters: @check_date (DATE), @threshold (FLOAT).
-- The median is computed with ROW_NUMBER (the middle one or two positions), which reads the
-- same in T-SQL and DuckDB; PERCENTILE_CONT is a window-only function in T-SQL.
WITH

recent_rows AS (
    SELECT activity_date
    FROM analytics.company_daily_activity
    WHERE
        activity_date >= DATEADD(DAY, -7, CAST(@check_date AS DATE))
        AND activity_date <= CAST(@check_date AS DATE)
),

daily_counts AS (
    SELECT
        activity_date,
        COUNT(*) AS row_count
    FROM recent_rows
    GROUP BY activity_date
),

current_day AS (
    SELECT COALESCE(SUM(row_count), 0) AS row_count
    FROM daily_counts
    WHERE activity_date = CAST(@check_date AS DATE)
),

trailing_days AS (
    SELECT
        row_count,
        ROW_NUMBER() OVER (ORDER BY row_count) AS position,
        COUNT(*) OVER () AS history_days
    FROM daily_counts
    WHERE activity_date < CAST(@check_date AS DATE)
),

trailing_median AS (
    SELECT
        AVG(CAST(row_count AS FLOAT)) AS median_rows,
        MAX(history_days) AS history_days
    FROM trailing_days
    WHERE 2 * position >= history_days AND 2 * position <= history_days + 2
),

compared AS (
    SELECT
        c.row_count,
        m.median_rows,
        m.history_days,
        CASE
            WHEN m.median_rows > 0 THEN (m.median_rows - c.row_count) / m.median_rows
        END AS drop_share
    FROM current_day AS c
    CROSS JOIN trailing_median AS m
)

SELECT
    drop_share AS observed_value,
    CAST(@threshold AS FLOAT) AS threshold,
    CASE
        WHEN median_rows > row_count THEN CAST(CEILING(median_rows - row_count) AS BIGINT) ELSE 0
    END AS offending_rows,
    CASE WHEN drop_share > CAST(@threshold AS FLOAT) THEN 1 ELSE 0 END AS is_violation,
    median_rows AS reference_value,
    CASE
        WHEN history_days IS NULL THEN 'no_history'
        ELSE CONCAT('history_days=', CAST(history_days AS NVARCHAR(10)))
    END AS note
FROM compared;
