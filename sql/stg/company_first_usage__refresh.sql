-- Purpose: keep stg.company_first_usage (first day each company appears in usage, active or
--   not: one half of "known since" for churn risk) in step with stg.product_usage after the
--   usage of @refresh_from or later was (re)staged. Usage before @refresh_from did not change,
--   so a first day before it stands; every later one is recomputed from usage >= @refresh_from.
--   The cost follows the changed span, not the length of history.
-- Grain: one row per company_id.
-- Parameters: @refresh_from (DATE): the earliest usage date that changed.
DELETE FROM stg.company_first_usage
WHERE first_usage_date >= CAST(@refresh_from AS DATE);

INSERT INTO stg.company_first_usage (company_id, first_usage_date)
SELECT
    usage_rows.company_id,
    MIN(usage_rows.activity_date) AS first_usage_date
FROM stg.product_usage AS usage_rows
WHERE
    usage_rows.activity_date >= CAST(@refresh_from AS DATE)
    AND NOT EXISTS (
        SELECT 1
        FROM stg.company_first_usage AS known
        WHERE known.company_id = usage_rows.company_id
    )
GROUP BY usage_rows.company_id;
