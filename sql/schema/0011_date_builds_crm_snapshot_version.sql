-- Purpose: ops.date_builds also records the content hash of the CRM snapshot each date was built
--   with (beside its date, crm_snapshot_date), so the builder can find every built date whose
--   snapshot in force was staged, replaced or removed since (ops/date_builds__crm_snapshot_changed.sql).
-- Existing rows take the hash of the snapshot staged now for their snapshot date: they were
--   built from it unless it changed since, which no earlier version could tell anyway.
ALTER TABLE ops.date_builds ADD crm_snapshot_version NVARCHAR(64) NULL;

UPDATE ops.date_builds
SET crm_snapshot_version = (
    SELECT snapshots.content_hash
    FROM stg.crm_snapshots AS snapshots
    WHERE snapshots.snapshot_date = date_builds.crm_snapshot_date
);
