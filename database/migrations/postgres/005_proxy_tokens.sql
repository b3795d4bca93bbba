-- 005_proxy_tokens (PostgreSQL): the model proxy's per-session tokens, shared by
-- every replica (a sandbox reaches the proxy through the load balancer, so any
-- replica may have to verify a token another one minted).
-- Only the SHA-256 hex digest of a token is stored, never the token itself.
-- Revoked when its engine stops or its session is deleted; a revoked row stays
-- (who had access, until when) and goes with its session's row.

CREATE TABLE proxy_tokens (
    token_hash  text PRIMARY KEY,
    session_id  uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    user_id     text NOT NULL,
    created_at  timestamptz NOT NULL,
    revoked_at  timestamptz
);
CREATE INDEX proxy_tokens_session_idx ON proxy_tokens (session_id);
