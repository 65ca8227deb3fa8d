-- Purpose: about how many companies one day of a build's spine holds (SPEC section 4), so the
--   builder can size the pieces and transactions of a long range to the engine's memory: the
--   CRM companies with a version in force at some point of the range, plus those reported in
--   usage on its last day (usage-only companies join them; a slight over-count is the safe side).
-- Grain: one row.
-- Parameters: @date_from, @date_to (DATE, the range to build).
SELECT COUNT(*) AS companies
FROM (
    SELECT versions.company_id
    FROM dim.companies AS versions
    WHERE
        versions.valid_from <= CAST(@date_to AS DATE)
        AND (versions.valid_to IS NULL OR versions.valid_to > CAST(@date_from AS DATE))
    UNION
    SELECT usage_rows.company_id
    FROM stg.product_usage AS usage_rows
    WHERE usage_rows.activity_date = CAST(@date_to AS DATE)
) AS spine_companies;
