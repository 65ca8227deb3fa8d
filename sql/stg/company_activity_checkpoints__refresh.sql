-- Purpose: keep stg.company_activity_checkpoints in step with stg.product_usage, so that
--   days_since_last_activity is exact however far back the last active day lies while a build
--   reads only one month of usage. A checkpoint (checkpoint_date = a month start M, company)
--   holds the company's last active day (active_users > 0 OR events > 0) strictly before M.
--   Checkpoints up to the month of @refresh_from summarise usage that did not change, so the
--   newest of them is kept as the base; every later month is recomputed from that base plus
--   the usage read from the base month on: the cost follows the changed span, not history.
-- Grain: one row per (checkpoint_date, company_id) for every company active before the month.
-- Parameters: @refresh_from (DATE): the earliest usage date that changed (or the build's first
--   date); @refresh_to (DATE): the build's last date, so the month it needs always exists.

-- 1. Drop every checkpoint after the base (the newest checkpoint at or before the month of
--    @refresh_from; none: rebuild from the first usage).
DELETE FROM stg.company_activity_checkpoints
WHERE checkpoint_date > (
    SELECT COALESCE(MAX(kept.checkpoint_date), CAST('0001-01-01' AS DATE))
    FROM stg.company_activity_checkpoints AS kept
    WHERE kept.checkpoint_date <= DATEFROMPARTS(YEAR(@refresh_from), MONTH(@refresh_from), 1)
);

-- 2. Recompute the months after the base, up to the month of the newest usage or @refresh_to.
WITH

base_checkpoint AS (
    SELECT MAX(checkpoint_date) AS checkpoint_date
    FROM stg.company_activity_checkpoints
),

pull_bounds AS (
    SELECT
        MIN(activity_date) AS first_date,
        MAX(activity_date) AS last_date
    FROM stg.usage_pulls
),

bounds AS (
    SELECT
        COALESCE(
            base_checkpoint.checkpoint_date,
            DATEFROMPARTS(YEAR(pull_bounds.first_date), MONTH(pull_bounds.first_date), 1)
        ) AS start_month,
        CASE
            WHEN pull_bounds.last_date > CAST(@refresh_to AS DATE)
                THEN DATEFROMPARTS(YEAR(pull_bounds.last_date), MONTH(pull_bounds.last_date), 1)
            ELSE DATEFROMPARTS(YEAR(@refresh_to), MONTH(@refresh_to), 1)
        END AS end_month
    FROM base_checkpoint
    CROSS JOIN pull_bounds
),

digits AS (
    SELECT digit
    FROM (VALUES (0), (1), (2), (3), (4), (5), (6), (7), (8), (9)) AS v(digit)
),

month_offsets AS (
    SELECT ones.digit + 10 * tens.digit + 100 * hundreds.digit AS month_offset
    FROM digits AS ones
    CROSS JOIN digits AS tens
    CROSS JOIN digits AS hundreds
),

-- The month starts to (re)compute: after start_month, up to and including end_month.
checkpoint_months AS (
    SELECT CAST(DATEADD(MONTH, month_offsets.month_offset, bounds.start_month) AS DATE) AS checkpoint_date
    FROM bounds
    INNER JOIN month_offsets
        ON
            month_offsets.month_offset >= 1
            AND month_offsets.month_offset <= DATEDIFF(MONTH, bounds.start_month, bounds.end_month)
),

-- The base: last active day before start_month, filed under start_month.
carried_forward AS (
    SELECT
        checkpoints.company_id,
        bounds.start_month AS activity_month,
        checkpoints.last_active_date
    FROM stg.company_activity_checkpoints AS checkpoints
    INNER JOIN bounds
        ON checkpoints.checkpoint_date = bounds.start_month
),

-- Last active day of each month from start_month on (end_month's own days count only later).
monthly_last_active AS (
    SELECT
        usage_rows.company_id,
        DATEFROMPARTS(YEAR(usage_rows.activity_date), MONTH(usage_rows.activity_date), 1) AS activity_month,
        MAX(usage_rows.activity_date) AS last_active_date
    FROM stg.product_usage AS usage_rows
    INNER JOIN bounds
        ON
            usage_rows.activity_date >= bounds.start_month
            AND usage_rows.activity_date < bounds.end_month
    WHERE usage_rows.active_users > 0 OR usage_rows.events > 0
    GROUP BY
        usage_rows.company_id,
        DATEFROMPARTS(YEAR(usage_rows.activity_date), MONTH(usage_rows.activity_date), 1)
),

company_months AS (
    SELECT
        company_id,
        activity_month,
        MAX(last_active_date) AS last_active_date
    FROM (
        SELECT
            company_id,
            activity_month,
            last_active_date
        FROM carried_forward
        UNION ALL
        SELECT
            company_id,
            activity_month,
            last_active_date
        FROM monthly_last_active
    ) AS candidates
    GROUP BY company_id, activity_month
),

-- Dates only grow with months, so a month's value holds for every checkpoint after it until
-- the company's next active month: each (checkpoint, company) is matched exactly once.
valid_until_next_active_month AS (
    SELECT
        company_id,
        activity_month,
        last_active_date,
        LEAD(activity_month) OVER (PARTITION BY company_id ORDER BY activity_month) AS next_activity_month
    FROM company_months
)

INSERT INTO stg.company_activity_checkpoints (checkpoint_date, company_id, last_active_date)
SELECT
    checkpoint_months.checkpoint_date,
    valid_until_next_active_month.company_id,
    valid_until_next_active_month.last_active_date
FROM valid_until_next_active_month
INNER JOIN checkpoint_months
    ON
        valid_until_next_active_month.activity_month < checkpoint_months.checkpoint_date
        AND (
            valid_until_next_active_month.next_activity_month IS NULL
            OR valid_until_next_active_month.next_activity_month >= checkpoint_months.checkpoint_date
        )
-- Stored month by month, so a build's read of one month touches only that month's pages.
ORDER BY checkpoint_months.checkpoint_date, valid_until_next_active_month.company_id;
