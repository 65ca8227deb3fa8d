-- Purpose: what fault recovery did for the dates of a range (status): steps marked abandoned
--   after a kill, and poisoned inputs with what became of them (poisoned, requeued, recovered).
-- Grain: one row per abandoned step or poison record touching a date of the range.
-- Parameters: @date_from, @date_to.
WITH abandoned AS (
    SELECT
        run_date AS date_from,
        run_date AS date_to,
        'abandoned_run' AS kind,
        CONCAT(run_id, '/', step) AS subject,
        status,
        finished_at AS at,
        error_message AS note
    FROM ops.pipeline_runs
    WHERE status = 'abandoned' AND run_date BETWEEN @date_from AND @date_to
),

poison AS (
    SELECT
        date_from,
        date_to,
        kind,
        subject,
        status,
        COALESCE(resolved_at, detected_at) AS at,
        note
    FROM ops.poison_events
    WHERE date_from <= @date_to AND date_to >= @date_from
)

SELECT
    date_from,
    date_to,
    kind,
    subject,
    status,
    at,
    note
FROM abandoned
UNION ALL
SELECT
    date_from,
    date_to,
    kind,
    subject,
    status,
    at,
    note
FROM poison
ORDER BY at, subject;
