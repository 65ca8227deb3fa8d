-- Purpose: drop the landing rows of one load that will not be staged (file rejected, same
--   content already staged, or a failure before the swap).
-- Grain: stg.crm_companies_landing rows of one load_id.
-- Parameters: @load_id.
DELETE FROM stg.crm_companies_landing
WHERE load_id = @load_id;
