-- Keyhole control plane, PostgreSQL schema v2: the audit log, as in SQLite.
-- Who (a token's name and id) did what (an action on a target) when and from
-- where. Rows are only ever added: nothing the server does deletes them.

CREATE TABLE audit_log (
    seq        BIGSERIAL PRIMARY KEY,
    at         BIGINT NOT NULL,
    action     TEXT NOT NULL,
    actor_name TEXT NOT NULL,
    token_id   TEXT NOT NULL,
    address    TEXT NOT NULL,
    target     TEXT NOT NULL,
    detail     TEXT NOT NULL
);
CREATE INDEX audit_log_by_action ON audit_log (action, seq);
CREATE INDEX audit_log_by_actor_name ON audit_log (actor_name, seq);
CREATE INDEX audit_log_by_token ON audit_log (token_id, seq);
CREATE INDEX audit_log_by_time ON audit_log (at);
