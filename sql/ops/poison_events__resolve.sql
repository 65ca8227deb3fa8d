-- Purpose: close the open poison record of one subject: re-queued, recovered (done by other
--   means) or dropped by an operator.
-- Grain: the 'poisoned' row of one subject.
-- Parameters: @subject, @status ('requeued' | 'recovered' | 'dropped'), @resolved_at,
--   @resolved_run_id, @note.
UPDATE ops.poison_events
SET
    status = @status,
    resolved_at = @resolved_at,
    resolved_run_id = @resolved_run_id,
    note = @note
WHERE subject = @subject AND status = 'poisoned';
