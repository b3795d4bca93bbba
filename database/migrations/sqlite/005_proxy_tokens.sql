-- 005_proxy_tokens (SQLite): the model proxy's per-session tokens, as in PostgreSQL.
-- Only the SHA-256 hex digest of a token is stored, never the token itself.
-- Revoked when its engine stops or its session is deleted; a revoked row stays
-- (who had access, until when) and goes with its session's row.

CREATE TABLE proxy_tokens (
    token_hash  TEXT PRIMARY KEY,
    session_id  TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    user_id     TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    revoked_at  TEXT
);
CREATE INDEX proxy_tokens_session_idx ON proxy_tokens (session_id);
