-- Purpose: bring dim.companies (SCD type 2) in line with the CRM snapshots after the snapshot
--   @snapshot_date was staged (new, replaced, or loaded out of date order).
-- Grain: dim.companies one row per (company_id, valid_from); valid_to is exclusive (the snapshot
--   date that ended the version), NULL while the version is open; is_current = (valid_to IS NULL).
-- How: versions are islands of consecutive snapshots in which a company is present with the same
--   attributes_hash. Only versions still open at the ANCHOR (the latest snapshot before
--   @snapshot_date, or @snapshot_date itself when there is none) or starting after it can change,
--   so only snapshots from the anchor on are read: the cost does not grow with history, and any
--   load order gives the versions date order would have given. The island starting at the anchor
--   keeps the valid_from of the version that was open there. The difference is then applied:
--   versions that changed are deleted, new ones inserted; an unchanged company writes nothing.
-- The daily case: when @snapshot_date is the latest snapshot and has an anchor before it, only
--   companies whose row there does not carry the hash of their version open since the anchor or
--   before (changed, new, gone) are recomputed: about 1 % of a daily file. dim.companies is the
--   SCD2 of the snapshots staged before this load (each load's transaction keeps it so), so such
--   an open version already is the company's one version from the anchor on, recomputed or not.
--   One join on company_id of the snapshot with the open versions finds them.
-- Parameters: @snapshot_date, @load_id (keys the work rows in dim.companies_rebuild), @run_id.

WITH
anchor AS (
    SELECT COALESCE(MAX(snapshot_date), @snapshot_date) AS anchor_date
    FROM stg.crm_snapshots
    WHERE snapshot_date < @snapshot_date
),

snapshot_dates AS (
    SELECT
        s.snapshot_date,
        LEAD(s.snapshot_date) OVER (ORDER BY s.snapshot_date) AS next_snapshot_date
    FROM stg.crm_snapshots AS s
    INNER JOIN anchor AS a ON s.snapshot_date >= a.anchor_date
),

-- The daily case: @snapshot_date is the latest snapshot and has one before it (the anchor).
daily AS (
    SELECT a.anchor_date
    FROM anchor AS a
    WHERE
        a.anchor_date < @snapshot_date
        AND NOT EXISTS (
            SELECT 1 AS later_snapshot
            FROM stg.crm_snapshots AS later
            WHERE later.snapshot_date > @snapshot_date
        )
),

current_rows AS (
    SELECT
        company_id,
        attributes_hash
    FROM stg.crm_companies
    WHERE snapshot_date = @snapshot_date
),

open_versions AS (
    SELECT
        company_id,
        valid_from,
        attributes_hash
    FROM dim.companies
    WHERE valid_to IS NULL
),

-- In the daily case, the companies whose versions can change: in @snapshot_date or open, but not
-- both with the same hash and a version open since the anchor or before.
changed AS (
    SELECT COALESCE(cur.company_id, open_version.company_id) AS company_id
    FROM current_rows AS cur
    FULL OUTER JOIN open_versions AS open_version ON cur.company_id = open_version.company_id
    CROSS JOIN daily AS d
    WHERE
        cur.company_id IS NULL
        OR open_version.company_id IS NULL
        OR cur.attributes_hash <> open_version.attributes_hash
        OR open_version.valid_from > d.anchor_date
),

company_snapshots AS (
    SELECT
        c.company_id,
        c.snapshot_date,
        d.next_snapshot_date,
        c.company_name,
        c.country,
        c.industry_tag,
        c.last_contact_at,
        c.attributes_hash
    FROM stg.crm_companies AS c
    INNER JOIN snapshot_dates AS d ON c.snapshot_date = d.snapshot_date
    WHERE
        NOT EXISTS (SELECT 1 AS is_daily FROM daily)
        OR c.company_id IN (SELECT changed.company_id FROM changed)
),

with_previous AS (
    SELECT
        company_snapshots.*,
        LAG(company_snapshots.attributes_hash) OVER (
            PARTITION BY company_snapshots.company_id ORDER BY company_snapshots.snapshot_date
        ) AS previous_hash,
        LAG(company_snapshots.next_snapshot_date) OVER (
            PARTITION BY company_snapshots.company_id ORDER BY company_snapshots.snapshot_date
        ) AS previous_next_snapshot_date
    FROM company_snapshots
),

island_starts AS (
    SELECT
        with_previous.*,
        CASE
            WHEN with_previous.previous_hash IS NULL THEN 1  -- first appearance from the anchor on
            WHEN with_previous.previous_hash <> with_previous.attributes_hash THEN 1  -- an attribute changed
            -- absent in between: came back
            WHEN with_previous.previous_next_snapshot_date <> with_previous.snapshot_date THEN 1
            ELSE 0
        END AS starts_island
    FROM with_previous
),

islands AS (
    SELECT
        island_starts.*,
        SUM(island_starts.starts_island) OVER (
            PARTITION BY island_starts.company_id ORDER BY island_starts.snapshot_date ROWS UNBOUNDED PRECEDING
        ) AS island_number
    FROM island_starts
),

versions AS (
    SELECT
        company_id,
        island_number,
        MIN(snapshot_date) AS first_snapshot_date,
        -- Only the latest snapshot overall has no next one; an island holding it is still open.
        CASE
            WHEN COUNT(next_snapshot_date) < COUNT(*) THEN NULL
            ELSE MAX(next_snapshot_date)
        END AS valid_to,
        -- One attributes_hash per island, so every row of it holds the same values.
        MAX(company_name) AS company_name,
        MAX(country) AS country,
        MAX(industry_tag) AS industry_tag,
        MAX(last_contact_at) AS last_contact_at,
        MAX(attributes_hash) AS attributes_hash
    FROM islands
    GROUP BY company_id, island_number
),

versions_with_history AS (
    SELECT
        v.company_id,
        COALESCE(open_at_anchor.valid_from, v.first_snapshot_date) AS valid_from,
        v.valid_to,
        v.company_name,
        v.country,
        v.industry_tag,
        v.last_contact_at,
        v.attributes_hash
    FROM versions AS v
    CROSS JOIN anchor AS a
    LEFT JOIN dim.companies AS open_at_anchor
        ON
            v.company_id = open_at_anchor.company_id
            AND v.first_snapshot_date = a.anchor_date
            AND v.attributes_hash = open_at_anchor.attributes_hash
            AND a.anchor_date >= open_at_anchor.valid_from
            AND (open_at_anchor.valid_to IS NULL OR a.anchor_date < open_at_anchor.valid_to)
)

INSERT INTO dim.companies_rebuild (
    load_id, company_id, valid_from, valid_to, company_name, country, industry_tag,
    last_contact_at, attributes_hash
)
SELECT
    @load_id AS load_id,
    company_id,
    valid_from,
    valid_to,
    company_name,
    country,
    industry_tag,
    last_contact_at,
    attributes_hash
FROM versions_with_history;

-- Versions open at the anchor or starting after it that the recomputation does not reproduce,
-- of companies that were recomputed or are gone from @snapshot_date. A gone company that was not
-- recomputed has no row from the anchor on any more: its version reached past the anchor only
-- through the replaced rows of @snapshot_date, so it starts there (a company of the anchor's
-- snapshot or of a later one has rows from the anchor on). A company in @snapshot_date but not
-- recomputed is an unchanged one of the daily case, whose version stays as it is.
DELETE FROM dim.companies
WHERE
    (
        companies.valid_to IS NULL
        OR companies.valid_to > (
            SELECT COALESCE(MAX(s.snapshot_date), @snapshot_date) AS anchor_date
            FROM stg.crm_snapshots AS s
            WHERE s.snapshot_date < @snapshot_date
        )
    )
    -- Uncorrelated IN lists, so the few candidates are found before the correlated NOT EXISTS
    -- below (as EXISTS, DuckDB decorrelated them over every open version: ~1 s per 1M).
    -- company_id is NOT NULL on both sides, so NOT IN means what NOT EXISTS did.
    AND (
        companies.company_id IN (
            SELECT rc.company_id
            FROM dim.companies_rebuild AS rc
            WHERE rc.load_id = @load_id
        )
        OR (
            companies.valid_from = @snapshot_date
            AND companies.company_id NOT IN (
                SELECT cur.company_id
                FROM stg.crm_companies AS cur
                WHERE cur.snapshot_date = @snapshot_date
            )
        )
    )
    AND NOT EXISTS (
        SELECT 1 AS same_version
        FROM dim.companies_rebuild AS r
        WHERE
            r.load_id = @load_id
            AND r.company_id = companies.company_id
            AND r.valid_from = companies.valid_from
            AND r.attributes_hash = companies.attributes_hash
            AND (r.valid_to = companies.valid_to OR (r.valid_to IS NULL AND companies.valid_to IS NULL))
    );

INSERT INTO dim.companies (
    company_id, valid_from, valid_to, is_current, company_name, country, industry_tag,
    last_contact_at, attributes_hash, run_id
)
SELECT
    r.company_id,
    r.valid_from,
    r.valid_to,
    CAST(CASE WHEN r.valid_to IS NULL THEN 1 ELSE 0 END AS BIT) AS is_current,
    r.company_name,
    r.country,
    r.industry_tag,
    r.last_contact_at,
    r.attributes_hash,
    @run_id AS run_id
FROM dim.companies_rebuild AS r
WHERE
    r.load_id = @load_id
    AND NOT EXISTS (
        SELECT 1 AS existing_version
        FROM dim.companies AS d
        WHERE d.company_id = r.company_id AND d.valid_from = r.valid_from
    );

DELETE FROM dim.companies_rebuild
WHERE load_id = @load_id;
