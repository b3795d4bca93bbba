-- 002_session_leases (SQLite): the same table as PostgreSQL's, for parity of
-- versions. Leases are used only in replicas mode, which needs PostgreSQL; a
-- SQLite database keeps this table empty.

CREATE TABLE session_leases (
    session_id  TEXT PRIMARY KEY,
    owner       TEXT NOT NULL,
    token       INTEGER NOT NULL,
    expires_at  TEXT NOT NULL
);
CREATE INDEX session_leases_expires_idx ON session_leases (expires_at);
