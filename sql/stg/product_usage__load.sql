-- Purpose: replace one activity date in stg.product_usage with the rows of one load, record the
--   pull in stg.usage_pulls, and clear the load's landing rows. The caller runs this in ONE
--   transaction: readers see the old day or the new day, never a mix, and a failure leaves the
--   previous rows intact.
-- Grain: stg.product_usage one row per (activity_date, company_id) (landing rows are already
--   validated and de-duplicated by shared/rules/usage_records.py);
--   stg.usage_pulls one row per activity_date.
-- Parameters: @load_id, @activity_date, @raw_blob, @content_hash, @page_count,
--   @api_record_count, @rejected_record_count, @duplicate_record_count,
--   @conflicting_record_count, @fetched_at, @ingested_at, @run_id.
-- Returns: the stg.usage_pulls row of @activity_date.

DELETE FROM stg.product_usage
WHERE activity_date = @activity_date;

WITH
landed AS (
    SELECT
        company_id,
        active_users,
        events,
        source_blob
    FROM stg.product_usage_landing
    WHERE load_id = @load_id AND activity_date = @activity_date
)

INSERT INTO stg.product_usage (
    activity_date, company_id, active_users, events, source_blob, ingested_at, run_id
)
SELECT
    @activity_date AS activity_date,
    company_id,
    active_users,
    events,
    source_blob,
    @ingested_at AS ingested_at,
    @run_id AS run_id
FROM landed;

DELETE FROM stg.usage_pulls
WHERE activity_date = @activity_date;

WITH
staged AS (
    SELECT COUNT(*) AS staged_row_count
    FROM stg.product_usage
    WHERE activity_date = @activity_date
)

INSERT INTO stg.usage_pulls (
    activity_date, raw_blob, content_hash, page_count, api_record_count, staged_row_count,
    rejected_record_count, duplicate_record_count, conflicting_record_count, fetched_at,
    ingested_at, run_id
)
SELECT
    @activity_date AS activity_date,
    @raw_blob AS raw_blob,
    @content_hash AS content_hash,
    @page_count AS page_count,
    @api_record_count AS api_record_count,
    staged.staged_row_count,
    @rejected_record_count AS rejected_record_count,
    @duplicate_record_count AS duplicate_record_count,
    @conflicting_record_count AS conflicting_record_count,
    @fetched_at AS fetched_at,
    @ingested_at AS ingested_at,
    @run_id AS run_id
FROM staged;

DELETE FROM stg.product_usage_landing
WHERE load_id = @load_id AND activity_date = @activity_date;

SELECT
    activity_date,
    content_hash,
    staged_row_count,
    api_record_count
FROM stg.usage_pulls
WHERE activity_date = @activity_date;
