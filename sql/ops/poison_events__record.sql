-- Purpose: record one poisoned input (a blob version or a build message), once: a second
--   detection of the same subject while it is still poisoned changes nothing.
-- Grain: ops.poison_events one open ('poisoned') row per subject.
-- Parameters: @subject, @kind ('crm_blob' | 'build'), @source_queue, @dates, @date_from, @date_to,
--   @detected_at,
--   @run_id, @note.
INSERT INTO ops.poison_events (
    subject, kind, source_queue, dates, date_from, date_to, status, detected_at, run_id, note
)
SELECT
    @subject AS subject,
    @kind AS kind,
    @source_queue AS source_queue,
    @dates AS dates,
    @date_from AS date_from,
    @date_to AS date_to,
    'poisoned' AS status,
    @detected_at AS detected_at,
    @run_id AS run_id,
    @note AS note
WHERE NOT EXISTS (
    SELECT 1
    FROM ops.poison_events AS p
    WHERE p.subject = @subject AND p.status = 'poisoned'
);
