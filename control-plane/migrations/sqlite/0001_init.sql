-- Keyhole control plane, SQLite schema v1.
-- Protocol messages are stored whole (prost-encoded `body`), beside the
-- columns that queries filter and order on.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT INTO meta (key, value) VALUES ('breakpoint_version', 0);

CREATE TABLE signing_keys (
    key_id     TEXT PRIMARY KEY,
    secret     BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    retired_at INTEGER
);

CREATE TABLE api_tokens (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    role        TEXT NOT NULL,
    secret_hash BLOB NOT NULL,
    creator     TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);

CREATE TABLE instances (
    agent_id  TEXT PRIMARY KEY,
    service   TEXT NOT NULL,
    last_seen INTEGER NOT NULL,
    body      BLOB NOT NULL
);
CREATE INDEX instances_by_service ON instances (service);

CREATE TABLE probes (
    agent_id TEXT NOT NULL REFERENCES instances (agent_id) ON DELETE CASCADE,
    label    TEXT NOT NULL,
    body     BLOB NOT NULL,
    PRIMARY KEY (agent_id, label)
);

CREATE TABLE sessions (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    creator    TEXT NOT NULL,
    key_id     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    closed_at  INTEGER
);

CREATE TABLE breakpoints (
    id         TEXT PRIMARY KEY,
    service    TEXT NOT NULL,
    session_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    deleted_at INTEGER,
    body       BLOB NOT NULL
);
CREATE INDEX breakpoints_by_service ON breakpoints (service, expires_at);

CREATE TABLE breakpoint_status (
    breakpoint_id TEXT NOT NULL,
    agent_id      TEXT NOT NULL,
    body          BLOB NOT NULL,
    PRIMARY KEY (breakpoint_id, agent_id)
);

CREATE TABLE drop_counts (
    agent_id      TEXT NOT NULL,
    breakpoint_id TEXT NOT NULL,
    reason        INTEGER NOT NULL,
    count         INTEGER NOT NULL,
    PRIMARY KEY (agent_id, breakpoint_id, reason)
);

CREATE TABLE snapshots (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT NOT NULL UNIQUE,
    breakpoint_id TEXT NOT NULL,
    session_id    TEXT NOT NULL,
    service       TEXT NOT NULL,
    trace_id      TEXT NOT NULL,
    received_at   INTEGER NOT NULL,
    body          BLOB NOT NULL
);
CREATE INDEX snapshots_by_session ON snapshots (session_id, seq);
CREATE INDEX snapshots_by_breakpoint ON snapshots (breakpoint_id, seq);
CREATE INDEX snapshots_by_service ON snapshots (service, seq);
CREATE INDEX snapshots_by_trace ON snapshots (trace_id, seq);
