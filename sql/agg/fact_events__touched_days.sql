-- Purpose: the UTC days a refresh of agg.company_daily_events must recompute because of rows
--   loaded into agg.fact_events after @loaded_after (NULL: every row) up to @loaded_through:
--   the days of those rows, and the days of every other copy of their event_ids (a new copy
--   can move an event to another day, whose count must then drop).
-- Grain: one row per activity_date.
-- Parameters: @loaded_after (DATETIME2 or NULL), @loaded_through (DATETIME2).
WITH

new_rows AS (
    SELECT DISTINCT event_id
    FROM agg.fact_events
    WHERE
        (@loaded_after IS NULL OR loaded_at > CAST(@loaded_after AS DATETIME2))
        AND loaded_at <= CAST(@loaded_through AS DATETIME2)
),

copies AS (
    SELECT all_rows.event_date
    FROM agg.fact_events AS all_rows
    INNER JOIN new_rows ON all_rows.event_id = new_rows.event_id
)

SELECT DISTINCT event_date AS activity_date
FROM copies
ORDER BY activity_date;
