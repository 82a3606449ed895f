-- 008_pending_sweep_index: the expired double opt-in sweep reads an index, not the table.
--
-- Every minute the sweep asks for the oldest consent rows still 'pending' past the confirm
-- window (gateway/store/privacy.py, expired_pending). Without an index on them that is a
-- sequential scan of the whole consent table: 0.2 s of PostgreSQL's CPU a minute at 3.1
-- million rows on 2026-12-03 (bench/run_scale.py), growing with every contact ever signed
-- up, while the pending rows stay a handful. The partial index holds only those rows, so
-- its size and the sweep's cost follow the number waiting for confirmation.
--
-- Built without CONCURRENTLY (migrations run in a transaction): on a large consent table
-- the build holds writes to it for one scan of the table.

CREATE INDEX consent_pending_since ON consent (updated_at) WHERE state = 'pending';
