-- Purpose: (re)build analytics.company_daily_activity for every day of @date_from..@date_to in
--   one set-based run (SPEC section 4), derived from staging and dims only, never from earlier
--   analytics rows, so builds in any order converge. The caller refreshes
--   stg.company_activity_checkpoints and stg.company_first_usage first and runs this inside
--   one transaction. Writes: deletes the rebuilt dates' rows of companies that left the spine,
--   then MERGEs the computed rows on (activity_date, company_id) straight from the query: no
--   work table, whose keyed insert and delete of every row cost more than the MERGE itself.
--   A range with no row yet (the daily build) is written by the MERGE's WHEN NOT MATCHED
--   INSERT alone (the builder asks, then Warehouse.run(new_keys_only=True)): the same rows,
--   without the join with the target and the matched branch's comparisons (DuckDB, one day of
--   100,000 companies: ~0.15 CPU-s less, about a quarter of this file's cost).
--   The builder keeps a run's company-days within the engine's memory by cutting long ranges
--   into pieces (one run of this file each, in one transaction).
--   - No dense grid and no window frames: on DuckDB ONE window sum as a ROWS frame over a dense
--     company x day grid costs about as much as the whole fan-out GROUP BY below with all eight
--     sums (5,000 companies x 365 days: 3.1 s each, same run).
--   - Spine of day D: the companies whose dim.companies version is in force on D, plus every
--     company with a stg.product_usage row on D (unknown to CRM: attributes NULL).
--   - Rolling values are calendar windows (D-6..D, D-27..D, D-13..D-7), missing days = 0:
--     each usage row is fanned out to the build days whose windows hold it (a join on the
--     date with a few dozen (build day, usage day) pairs per build day) and summed with a
--     GROUP BY. No dense grid and no window frames: the work follows the usage rows read.
--   - days_since_last_activity: the last active day (active_users > 0 OR events > 0) among the
--     days read for D (its month to date and D-27..D), else the checkpoint at D's month start.
--     A build reads usage from the earlier of the first day's month start and its D-27 (at most
--     30 days before it) up to the last day, plus the range's monthly checkpoints: never the
--     rest of history.
--   - Ratios: events_7d_change_pct ((events_7d - events_prev_7d) / events_prev_7d x 100,
--     DECIMAL(23, 2): any BIGINT change fits) and events_per_active_user_7d (DECIMAL(21, 2)) are
--     rounded half away from zero to 2 decimals, NULL when the divisor is 0. Both are computed
--     as ROUND(numerator x 100 / divisor, 0) / 100 from exact integers, so T-SQL's DECIMAL
--     division and DuckDB's (which divides in DOUBLE) round the same way.
--     engagement_consistency_28d = active_days_28d / 28 as DECIMAL(5, 4) (k / 28 is never a
--     half-way case at 4 decimals).
--   - is_churn_risk: no usage on each of D-6..D, for a company known (first CRM version or first
--     usage row) since D-6 or earlier.
-- Grain: one row per (activity_date, company_id).
-- Parameters: @date_from, @date_to (DATE, the range to rebuild), @run_id, @loaded_at
--   (the build's record_loaded_at: no clock in SQL).

-- 1. Delete the rebuilt dates' rows of companies that left the spine (neither a CRM version
--    in force nor a usage row on the day). Not MERGE ... WHEN NOT MATCHED BY SOURCE: that
--    branch makes the engine scan the whole target table (DuckDB: every build would cost more
--    as history grows), while this DELETE reads only the rebuilt dates.
DELETE FROM analytics.company_daily_activity
WHERE
    activity_date BETWEEN CAST(@date_from AS DATE) AND CAST(@date_to AS DATE)
    AND NOT EXISTS (
        SELECT 1
        FROM dim.companies AS versions
        WHERE
            versions.valid_from <= CAST(@date_to AS DATE)
            AND versions.company_id = analytics.company_daily_activity.company_id
            AND versions.valid_from <= analytics.company_daily_activity.activity_date
            AND (versions.valid_to IS NULL OR versions.valid_to > analytics.company_daily_activity.activity_date)
    )
    AND NOT EXISTS (
        SELECT 1
        FROM stg.product_usage AS usage_rows
        WHERE
            -- The range again, written out so the engine reads only the rebuilt dates' usage.
            usage_rows.activity_date BETWEEN CAST(@date_from AS DATE) AND CAST(@date_to AS DATE)
            AND usage_rows.activity_date = analytics.company_daily_activity.activity_date
            AND usage_rows.company_id = analytics.company_daily_activity.company_id
    );

-- 2. Compute the rows of the range and apply them: update rows whose values changed, insert
--    new ones. Unchanged rows keep their record_loaded_at and run_id. The date range in ON lets
--    the engine read only the rebuilt dates of the target (the range is also where every source
--    row lies, so matching is exact).
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
        CAST(@date_from AS DATE) AS date_from,
        CAST(@date_to AS DATE) AS date_to
),

build_days AS (
    SELECT DATEADD(DAY, day_offsets.day_offset, bounds.date_from) AS activity_date
    FROM bounds
    INNER JOIN day_offsets
        ON day_offsets.day_offset <= DATEDIFF(DAY, bounds.date_from, bounds.date_to)
),

-- The usage days each build day reads: its 28-day window D-27..D (days_back 0..27) and its
-- month to date (for the last active day; the month's checkpoint holds the days before it).
-- A few dozen rows per build day: joined to usage on the date, they fan each usage row out to
-- the build days it counts for, which a GROUP BY then sums (no dense grid, no window frames).
window_days AS (
    SELECT
        build_days.activity_date,
        DATEADD(DAY, -day_offsets.day_offset, build_days.activity_date) AS usage_date,
        day_offsets.day_offset AS days_back
    FROM build_days
    INNER JOIN day_offsets
        ON day_offsets.day_offset <= 30
    WHERE day_offsets.day_offset <= 27 OR day_offsets.day_offset < DAY(build_days.activity_date)
),

-- Usage of the days the build reads: from the earlier of the first day's month start and its
-- D-27 up to the last day. The bounds are written out from the parameters (not joined from
-- `bounds`) so the engine skips the rest of history when it scans: a build's cost must not
-- grow with history.
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

-- Calendar-window sums per build day and company with usage in the window; missing days add
-- nothing, so they count as 0. Companies without any usage row in a window get zeros below.
windowed AS (
    SELECT
        window_days.activity_date,
        usage_rows.company_id,
        SUM(CASE WHEN window_days.days_back <= 6 THEN usage_rows.active_users ELSE 0 END) AS active_users_7d,
        SUM(CASE WHEN window_days.days_back <= 6 THEN usage_rows.events ELSE 0 END) AS events_7d,
        SUM(
            CASE WHEN window_days.days_back <= 6 AND usage_rows.active_users > 0 THEN 1 ELSE 0 END
        ) AS active_days_7d,
        SUM(
            CASE WHEN window_days.days_back BETWEEN 7 AND 13 THEN usage_rows.events ELSE 0 END
        ) AS events_prev_7d,
        SUM(CASE WHEN window_days.days_back <= 27 THEN usage_rows.active_users ELSE 0 END) AS active_users_28d,
        SUM(CASE WHEN window_days.days_back <= 27 THEN usage_rows.events ELSE 0 END) AS events_28d,
        SUM(
            CASE WHEN window_days.days_back <= 27 AND usage_rows.active_users > 0 THEN 1 ELSE 0 END
        ) AS active_days_28d,
        MAX(
            CASE WHEN usage_rows.active_users > 0 OR usage_rows.events > 0 THEN usage_rows.activity_date END
        ) AS last_active_read
    FROM window_days
    INNER JOIN usage_rows
        ON window_days.usage_date = usage_rows.activity_date
    -- A reported day without activity adds nothing to a sum and is not an active day.
    WHERE usage_rows.active_users <> 0 OR usage_rows.events <> 0
    GROUP BY window_days.activity_date, usage_rows.company_id
),

-- Last active day before each build day's month (the months of the range; the caller's
-- refresh keeps a checkpoint for every month up to @date_to's).
month_checkpoints AS (
    SELECT
        checkpoints.checkpoint_date,
        checkpoints.company_id,
        checkpoints.last_active_date
    FROM stg.company_activity_checkpoints AS checkpoints
    WHERE
        checkpoints.checkpoint_date >= DATEFROMPARTS(YEAR(@date_from), MONTH(@date_from), 1)
        AND checkpoints.checkpoint_date <= CAST(@date_to AS DATE)
),

snapshot_in_force AS (
    SELECT
        build_days.activity_date,
        MAX(snapshots.snapshot_date) AS crm_snapshot_date
    FROM build_days
    LEFT JOIN stg.crm_snapshots AS snapshots
        ON build_days.activity_date >= snapshots.snapshot_date
    GROUP BY build_days.activity_date
),

-- "Known since D-6 or earlier" (churn risk) from the two first sightings, each joined on its
-- own: a company first seen after the range's last D-6 is known on none of its days (NULL
-- below, so no churn risk), so neither read needs the sightings after it, and no GROUP BY over
-- the union of both is needed.
first_crm_versions AS (
    SELECT
        versions.company_id,
        MIN(versions.valid_from) AS first_version_from
    FROM dim.companies AS versions
    WHERE versions.valid_from <= DATEADD(DAY, -6, CAST(@date_to AS DATE))
    GROUP BY versions.company_id
),

first_usage AS (
    SELECT
        first_usage_rows.company_id,
        first_usage_rows.first_usage_date
    FROM stg.company_first_usage AS first_usage_rows
    WHERE first_usage_rows.first_usage_date <= DATEADD(DAY, -6, CAST(@date_to AS DATE))
),

-- The spine: CRM companies in force on each day, full-outer-joined with that day's usage.
-- A version in force on every day of the range (every version, for a one-day build; nearly
-- every one, for a range) pairs with each day by a cross join: an inequality join of all
-- versions with the days costs the engine a sort of every version (DuckDB, one day: 4-10x the
-- read of the versions). Only the versions that start or end inside the range take the
-- inequality join. Each half reads dim.companies with its own filter: a CTE read twice would
-- be materialised.
crm_spine AS (
    SELECT
        build_days.activity_date,
        versions.company_id,
        versions.company_name,
        versions.country,
        versions.industry_tag,
        versions.last_contact_at
    FROM dim.companies AS versions
    CROSS JOIN build_days
    WHERE
        versions.valid_from <= CAST(@date_from AS DATE)
        AND (versions.valid_to IS NULL OR versions.valid_to > CAST(@date_to AS DATE))
    UNION ALL
    SELECT
        build_days.activity_date,
        versions.company_id,
        versions.company_name,
        versions.country,
        versions.industry_tag,
        versions.last_contact_at
    FROM dim.companies AS versions
    INNER JOIN build_days
        ON
            versions.valid_from <= build_days.activity_date
            AND (versions.valid_to IS NULL OR versions.valid_to > build_days.activity_date)
    WHERE
        versions.valid_from <= CAST(@date_to AS DATE)
        AND (versions.valid_to IS NULL OR versions.valid_to > CAST(@date_from AS DATE))
        AND (
            versions.valid_from > CAST(@date_from AS DATE)
            OR versions.valid_to <= CAST(@date_to AS DATE)
        )
),

-- Read from the table with the range's own bounds, not from usage_rows: a CTE read twice is
-- materialised by DuckDB (every usage row of the read copied once more before the joins).
usage_spine AS (
    SELECT
        day_rows.activity_date,
        day_rows.company_id,
        day_rows.active_users,
        day_rows.events
    FROM stg.product_usage AS day_rows
    WHERE day_rows.activity_date BETWEEN CAST(@date_from AS DATE) AND CAST(@date_to AS DATE)
),

spine AS (
    SELECT
        COALESCE(crm_spine.activity_date, usage_spine.activity_date) AS activity_date,
        COALESCE(crm_spine.company_id, usage_spine.company_id) AS company_id,
        crm_spine.company_name,
        crm_spine.country,
        crm_spine.industry_tag,
        crm_spine.last_contact_at,
        COALESCE(usage_spine.active_users, 0) AS active_users,
        COALESCE(usage_spine.events, 0) AS events,
        CASE WHEN crm_spine.company_id IS NULL THEN 1 ELSE 0 END AS is_unknown_company,
        CASE WHEN usage_spine.company_id IS NULL THEN 1 ELSE 0 END AS is_no_usage_reported
    FROM crm_spine
    FULL OUTER JOIN usage_spine
        ON
            crm_spine.activity_date = usage_spine.activity_date
            AND crm_spine.company_id = usage_spine.company_id
),

activity AS (
    SELECT
        spine.activity_date,
        spine.company_id,
        spine.company_name,
        spine.country,
        spine.industry_tag,
        spine.last_contact_at,
        spine.active_users,
        spine.events,
        COALESCE(windowed.active_users_7d, 0) AS active_users_7d,
        COALESCE(windowed.events_7d, 0) AS events_7d,
        COALESCE(windowed.active_days_7d, 0) AS active_days_7d,
        COALESCE(windowed.events_prev_7d, 0) AS events_prev_7d,
        COALESCE(windowed.active_users_28d, 0) AS active_users_28d,
        COALESCE(windowed.events_28d, 0) AS events_28d,
        COALESCE(windowed.active_days_28d, 0) AS active_days_28d,
        -- The usage read covers the month to date and D-27..D: a last active day found there is
        -- the latest one; otherwise it lies before the month, in the month's checkpoint.
        COALESCE(windowed.last_active_read, month_checkpoints.last_active_date) AS last_active_date,
        first_crm_versions.first_version_from,
        first_usage.first_usage_date,
        snapshot_in_force.crm_snapshot_date,
        spine.is_unknown_company,
        spine.is_no_usage_reported
    FROM spine
    INNER JOIN snapshot_in_force
        ON spine.activity_date = snapshot_in_force.activity_date
    LEFT JOIN windowed
        ON
            spine.activity_date = windowed.activity_date
            AND spine.company_id = windowed.company_id
    LEFT JOIN month_checkpoints
        ON
            spine.company_id = month_checkpoints.company_id
            AND DATEFROMPARTS(YEAR(spine.activity_date), MONTH(spine.activity_date), 1)
            = month_checkpoints.checkpoint_date
    LEFT JOIN first_crm_versions
        ON spine.company_id = first_crm_versions.company_id
    LEFT JOIN first_usage
        ON spine.company_id = first_usage.company_id
),

built_rows AS (
    SELECT
        activity_date,
        company_id,
        company_name,
        country,
        industry_tag,
        last_contact_at,
        active_users,
        events,
        active_users_7d,
        events_7d,
        active_days_7d,
        active_users_28d,
        events_28d,
        active_days_28d,
        events_prev_7d,
        CAST(
            ROUND(CAST(events_7d - events_prev_7d AS DECIMAL(19, 0)) * 10000 / NULLIF(events_prev_7d, 0), 0) / 100
            AS DECIMAL(23, 2)
        ) AS events_7d_change_pct,
        CAST(CAST(active_days_28d AS DECIMAL(9, 4)) / 28 AS DECIMAL(5, 4)) AS engagement_consistency_28d,
        CAST(
            ROUND(CAST(events_7d AS DECIMAL(19, 0)) * 100 / NULLIF(active_users_7d, 0), 0) / 100 AS DECIMAL(21, 2)
        ) AS events_per_active_user_7d,
        DATEDIFF(DAY, last_active_date, activity_date) AS days_since_last_activity,
        CAST(
            CASE
                WHEN
                    active_users_7d = 0
                    AND events_7d = 0
                    AND (
                        first_version_from <= DATEADD(DAY, -6, activity_date)
                        OR first_usage_date <= DATEADD(DAY, -6, activity_date)
                    )
                    THEN 1
                ELSE 0
            END AS BIT
        ) AS is_churn_risk,
        crm_snapshot_date,
        -- Sorted, comma-separated, '' when none (CONCAT_WS skips NULLs).
        CONCAT_WS(
            ',',
            CASE WHEN crm_snapshot_date IS NULL OR crm_snapshot_date < activity_date THEN 'crm_stale' END,
            CASE WHEN is_no_usage_reported = 1 THEN 'no_usage_reported' END,
            CASE WHEN is_unknown_company = 1 THEN 'unknown_company' END
        ) AS data_quality_flags
    FROM activity
)

MERGE INTO analytics.company_daily_activity AS target
USING built_rows AS source
    ON
        target.activity_date = source.activity_date
        AND target.company_id = source.company_id
        AND target.activity_date BETWEEN CAST(@date_from AS DATE) AND CAST(@date_to AS DATE)
WHEN MATCHED AND (
    target.company_name IS DISTINCT FROM source.company_name
    OR target.country IS DISTINCT FROM source.country
    OR target.industry_tag IS DISTINCT FROM source.industry_tag
    OR target.last_contact_at IS DISTINCT FROM source.last_contact_at
    OR target.active_users <> source.active_users
    OR target.events <> source.events
    OR target.active_users_7d <> source.active_users_7d
    OR target.events_7d <> source.events_7d
    OR target.active_days_7d <> source.active_days_7d
    -- NULL in rows built before migration 0007: IS DISTINCT FROM makes a rebuild fill them.
    OR target.active_users_28d IS DISTINCT FROM source.active_users_28d
    OR target.events_28d IS DISTINCT FROM source.events_28d
    OR target.active_days_28d IS DISTINCT FROM source.active_days_28d
    OR target.events_prev_7d IS DISTINCT FROM source.events_prev_7d
    OR target.events_7d_change_pct IS DISTINCT FROM source.events_7d_change_pct
    OR target.engagement_consistency_28d IS DISTINCT FROM source.engagement_consistency_28d
    OR target.events_per_active_user_7d IS DISTINCT FROM source.events_per_active_user_7d
    OR target.days_since_last_activity IS DISTINCT FROM source.days_since_last_activity
    OR target.is_churn_risk <> source.is_churn_risk
    OR target.crm_snapshot_date IS DISTINCT FROM source.crm_snapshot_date
    OR target.data_quality_flags <> source.data_quality_flags
) THEN UPDATE SET
    target.company_name = source.company_name,
    target.country = source.country,
    target.industry_tag = source.industry_tag,
    target.last_contact_at = source.last_contact_at,
    target.active_users = source.active_users,
    target.events = source.events,
    target.active_users_7d = source.active_users_7d,
    target.events_7d = source.events_7d,
    target.active_days_7d = source.active_days_7d,
    target.active_users_28d = source.active_users_28d,
    target.events_28d = source.events_28d,
    target.active_days_28d = source.active_days_28d,
    target.events_prev_7d = source.events_prev_7d,
    target.events_7d_change_pct = source.events_7d_change_pct,
    target.engagement_consistency_28d = source.engagement_consistency_28d,
    target.events_per_active_user_7d = source.events_per_active_user_7d,
    target.days_since_last_activity = source.days_since_last_activity,
    target.is_churn_risk = source.is_churn_risk,
    target.crm_snapshot_date = source.crm_snapshot_date,
    target.data_quality_flags = source.data_quality_flags,
    target.record_loaded_at = @loaded_at,
    target.run_id = @run_id
WHEN NOT MATCHED BY TARGET THEN
    INSERT (
        activity_date,
        company_id,
        company_name,
        country,
        industry_tag,
        last_contact_at,
        active_users,
        events,
        active_users_7d,
        events_7d,
        active_days_7d,
        active_users_28d,
        events_28d,
        active_days_28d,
        events_prev_7d,
        events_7d_change_pct,
        engagement_consistency_28d,
        events_per_active_user_7d,
        days_since_last_activity,
        is_churn_risk,
        crm_snapshot_date,
        data_quality_flags,
        record_loaded_at,
        run_id
    )
    VALUES (
        source.activity_date,
        source.company_id,
        source.company_name,
        source.country,
        source.industry_tag,
        source.last_contact_at,
        source.active_users,
        source.events,
        source.active_users_7d,
        source.events_7d,
        source.active_days_7d,
        source.active_users_28d,
        source.events_28d,
        source.active_days_28d,
        source.events_prev_7d,
        source.events_7d_change_pct,
        source.engagement_consistency_28d,
        source.events_per_active_user_7d,
        source.days_since_last_activity,
        source.is_churn_risk,
        source.crm_snapshot_date,
        source.data_quality_flags,
        @loaded_at,
        @run_id
    );
