-- 002_session_leases (PostgreSQL): who runs each session, for replicas mode.
-- A replica takes a session's lease before it changes the session (a turn, a
-- pause, a resume, a delete), renews it while it works and deletes it at the
-- end. An expired lease is free; `token` rises with every new holder, so a
-- holder that lost its lease cannot renew or release its successor's.
-- Times are the database's clock (now()), the one clock every replica shares.
-- No foreign key: a lease is taken before its new session's row exists.

CREATE TABLE session_leases (
    session_id  uuid PRIMARY KEY,
    owner       text NOT NULL,
    token       bigint NOT NULL,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX session_leases_expires_idx ON session_leases (expires_at);
