-- Keyhole control plane, PostgreSQL schema v4: a snapshot's position comes
-- from the transaction that stored it, so that batches stored concurrently
-- need not take turns for their positions to become visible in order.
--
-- The n-th snapshot (n = 1, 2, ...) that transaction x stores is at
--     base + x * positions_per_transaction + n,
-- x being the transaction's 64-bit id (pg_current_xact_id()). A reader only
-- reads below the horizon, base + h * positions_per_transaction, where h is
-- the oldest transaction that may still commit snapshots to this database.
-- Transactions older than h have ended; transactions yet to start will get
-- ids above it; so no snapshot can ever appear below the horizon once a
-- reader has read there, and a cursor that moves past a position never
-- misses a snapshot stored at a lower one.

-- Positions drawn from the sequence before this migration stay below every
-- later one. Replicas of earlier versions, which would still draw them from
-- the sequence (interleaved with those of transactions in flight), can no
-- longer store snapshots: their uploads fail and their agents send them again.
ALTER TABLE snapshots ALTER COLUMN seq DROP DEFAULT;
INSERT INTO meta (key, value)
    SELECT 'snapshot_position_base', COALESCE(MAX(seq), 0) FROM snapshots;
-- A transaction stores at most this many snapshots less one.
INSERT INTO meta (key, value) VALUES ('positions_per_transaction', 65536);

-- The position of the first snapshot the calling transaction stores, less one
-- (it gives the transaction an id if it has none).
CREATE FUNCTION snapshot_positions_start() RETURNS bigint LANGUAGE sql VOLATILE AS $$
    SELECT (SELECT value FROM meta WHERE key = 'snapshot_position_base')
         + pg_current_xact_id()::text::bigint
           * (SELECT value FROM meta WHERE key = 'positions_per_transaction')
$$;

-- Every snapshot below this position, as the calling statement sees the
-- database, is committed, or never will be. Transactions in progress hold it
-- back unless pg_stat_activity shows them in another database (it may hide
-- other roles' transactions: those then hold it back too, which only delays).
CREATE FUNCTION snapshot_horizon() RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT (SELECT value FROM meta WHERE key = 'snapshot_position_base')
         + COALESCE(MIN(running), pg_snapshot_xmax(pg_current_snapshot()))::text::bigint
           * (SELECT value FROM meta WHERE key = 'positions_per_transaction')
    FROM pg_snapshot_xip(pg_current_snapshot()) AS running
    WHERE running::xid NOT IN (
        SELECT backend_xid FROM pg_stat_get_activity(NULL)
        WHERE backend_xid IS NOT NULL
          AND datid IS DISTINCT FROM (SELECT oid FROM pg_database WHERE datname = current_database()))
$$;
