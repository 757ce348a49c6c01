-- Keyhole control plane, PostgreSQL schema v1: the SQLite schema with
-- PostgreSQL's types (BIGINT for times and counters, BYTEA for bodies).
-- Protocol messages are stored whole (prost-encoded `body`), beside the
-- columns that queries filter and order on.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO meta (key, value) VALUES ('breakpoint_version', 0);

CREATE TABLE signing_keys (
    key_id     TEXT PRIMARY KEY,
    secret     BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    retired_at BIGINT
);

CREATE TABLE api_tokens (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    role        TEXT NOT NULL,
    secret_hash BYTEA NOT NULL,
    creator     TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);

CREATE TABLE instances (
    agent_id  TEXT PRIMARY KEY,
    service   TEXT NOT NULL,
    last_seen BIGINT NOT NULL,
    body      BYTEA NOT NULL
);
CREATE INDEX instances_by_service ON instances (service);

CREATE TABLE probes (
    agent_id TEXT NOT NULL REFERENCES instances (agent_id) ON DELETE CASCADE,
    label    TEXT NOT NULL,
    body     BYTEA NOT NULL,
    PRIMARY KEY (agent_id, label)
);

CREATE TABLE sessions (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    creator    TEXT NOT NULL,
    key_id     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    closed_at  BIGINT
);

CREATE TABLE breakpoints (
    id         TEXT PRIMARY KEY,
    service    TEXT NOT NULL,
    session_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    deleted_at BIGINT,
    body       BYTEA NOT NULL
);
CREATE INDEX breakpoints_by_service ON breakpoints (service, expires_at);

CREATE TABLE breakpoint_status (
    breakpoint_id TEXT NOT NULL,
    agent_id      TEXT NOT NULL,
    body          BYTEA NOT NULL,
    PRIMARY KEY (breakpoint_id, agent_id)
);

CREATE TABLE drop_counts (
    agent_id      TEXT NOT NULL,
    breakpoint_id TEXT NOT NULL,
    reason        INTEGER NOT NULL,
    count         BIGINT NOT NULL,
    PRIMARY KEY (agent_id, breakpoint_id, reason)
);

CREATE TABLE snapshots (
    seq           BIGSERIAL PRIMARY KEY,
    id            TEXT NOT NULL UNIQUE,
    breakpoint_id TEXT NOT NULL,
    session_id    TEXT NOT NULL,
    service       TEXT NOT NULL,
    trace_id      TEXT NOT NULL,
    received_at   BIGINT NOT NULL,
    body          BYTEA NOT NULL
);
CREATE INDEX snapshots_by_session ON snapshots (session_id, seq);
CREATE INDEX snapshots_by_breakpoint ON snapshots (breakpoint_id, seq);
CREATE INDEX snapshots_by_service ON snapshots (service, seq);
CREATE INDEX snapshots_by_trace ON snapshots (trace_id, seq);
