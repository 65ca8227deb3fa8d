-- Purpose: remove the stored freshness of the dates in a range before the evaluation's rows are
--   loaded again (in one transaction with the load: readers see the old rows or the new ones).
-- Grain: deletes rows of the dates in the range.
-- Parameters: @date_from, @date_to (DATE, inclusive).
DELETE FROM ops.input_freshness
WHERE activity_date BETWEEN CAST(@date_from AS DATE) AND CAST(@date_to AS DATE);
