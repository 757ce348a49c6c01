-- Keyhole control plane, PostgreSQL schema v3: snapshot retention deletes the
-- oldest snapshots by the time they were received, a batch at a time.

CREATE INDEX snapshots_by_received_at ON snapshots (received_at);
