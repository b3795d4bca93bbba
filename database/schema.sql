-- agent-tui: the full PostgreSQL schema, equal to applying every file in
-- database/migrations/postgres/ in order (tests/backend/store/test_migrations.py
-- checks this). For bootstrapping by hand:
--
--     psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f database/schema.sql
--
-- It records the migrations it contains in schema_migrations, with their
-- checksums, so the application's migrate() then finds nothing to apply.
-- When adding a migration, append its statements and its row here too.

BEGIN;

CREATE TABLE schema_migrations (
    version     text PRIMARY KEY,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);

-- ---------------------------------------------------------------------------
-- 001_init
-- ---------------------------------------------------------------------------
CREATE TABLE api_keys (
    id            uuid PRIMARY KEY,
    user_id       text NOT NULL,
    name          text NOT NULL,
    -- SHA-256 hex digest of the full key; the key itself is never stored.
    key_hash      text NOT NULL UNIQUE,
    prefix        text NOT NULL,
    last4         text NOT NULL,
    environment   text NOT NULL,
    scopes        text[] NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL,
    last_used_at  timestamptz,
    expires_at    timestamptz,
    revoked_at    timestamptz
);
CREATE INDEX api_keys_user_created_idx ON api_keys (user_id, created_at DESC, id DESC);

CREATE TABLE sessions (
    id                 uuid PRIMARY KEY,
    user_id            text NOT NULL,
    -- The key that created the session; no foreign key, keys are only ever revoked.
    api_key_id         uuid,
    status             text NOT NULL,
    title              text,
    repo               text,
    model              text NOT NULL,
    system_prompt      text,
    sandbox_provider   text NOT NULL DEFAULT 'local',
    sandbox_id         text,
    sandbox_state      text NOT NULL DEFAULT 'none',
    snapshot_id        text,
    last_seq           bigint NOT NULL DEFAULT 0,
    input_tokens       bigint NOT NULL DEFAULT 0,
    output_tokens      bigint NOT NULL DEFAULT 0,
    cache_read_tokens  bigint NOT NULL DEFAULT 0,
    sandbox_seconds    double precision NOT NULL DEFAULT 0,
    message_count      integer NOT NULL DEFAULT 0,
    error              jsonb,
    created_at         timestamptz NOT NULL,
    last_activity_at   timestamptz NOT NULL
);
-- Serves the newest-first listing and its (created_at, id) cursor.
CREATE INDEX sessions_user_created_idx ON sessions (user_id, created_at DESC, id DESC);
-- Serves the sweeps over every user's sessions in some statuses.
CREATE INDEX sessions_status_idx ON sessions (status);

CREATE TABLE messages (
    id              uuid PRIMARY KEY,
    -- Insertion order: breaks ties between messages with the same created_at.
    pos             bigint GENERATED ALWAYS AS IDENTITY,
    session_id      uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    role            text NOT NULL,
    content         text NOT NULL,
    tool_calls      jsonb NOT NULL DEFAULT '[]',
    stop_reason     text,
    usage           jsonb,
    model_messages  jsonb NOT NULL DEFAULT '[]',
    created_at      timestamptz NOT NULL
);
CREATE INDEX messages_session_created_idx ON messages (session_id, created_at, pos);

CREATE TABLE events (
    session_id  uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    seq         bigint NOT NULL,
    type        text NOT NULL,
    data        jsonb NOT NULL,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (session_id, seq)
);

CREATE TABLE usage_records (
    id          uuid PRIMARY KEY,
    user_id     text NOT NULL,
    -- No foreign key: usage is kept even if a session is ever deleted.
    session_id  uuid,
    event_type  text NOT NULL,
    quantity    double precision NOT NULL,
    created_at  timestamptz NOT NULL
);
CREATE INDEX usage_records_user_created_idx ON usage_records (user_id, created_at);

-- ---------------------------------------------------------------------------
-- 002_session_leases

CREATE TABLE session_leases (
    session_id  uuid PRIMARY KEY,
    owner       text NOT NULL,
    token       bigint NOT NULL,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX session_leases_expires_idx ON session_leases (expires_at);

-- ---------------------------------------------------------------------------
-- 003_agent_features
-- ---------------------------------------------------------------------------
-- {"thinking": bool, "permissionMode": "auto"|"ask"|"read-only", "allowedTools": [...]}
ALTER TABLE sessions ADD COLUMN options jsonb NOT NULL DEFAULT '{}';

-- A tool call waiting for the user's approval (permission mode "ask"). The turn
-- that asked waits for `decision` to be set; any replica may set it.
CREATE TABLE permission_requests (
    id          uuid PRIMARY KEY,
    session_id  uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    -- the assistant message and the tool_use block that asked
    message_id  uuid NOT NULL,
    tool_use_id text NOT NULL,
    tool        text NOT NULL,
    input       jsonb NOT NULL DEFAULT '{}',
    -- NULL while pending; then allow | deny | always
    decision    text,
    created_at  timestamptz NOT NULL,
    decided_at  timestamptz
);
CREATE INDEX permission_requests_session_idx ON permission_requests (session_id, created_at);

-- ---------------------------------------------------------------------------
-- 004_session_engine
-- ---------------------------------------------------------------------------
-- Who runs a session's turns: "builtin" (the agent loop) or "opencode".
ALTER TABLE sessions ADD COLUMN engine text NOT NULL DEFAULT 'builtin';

-- ---------------------------------------------------------------------------
-- 005_proxy_tokens
-- ---------------------------------------------------------------------------
-- The model proxy's per-session tokens: only the SHA-256 hex digest is stored.
CREATE TABLE proxy_tokens (
    token_hash  text PRIMARY KEY,
    session_id  uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    user_id     text NOT NULL,
    created_at  timestamptz NOT NULL,
    revoked_at  timestamptz
);
CREATE INDEX proxy_tokens_session_idx ON proxy_tokens (session_id);

INSERT INTO schema_migrations (version, checksum) VALUES
    ('001_init', '6b7525eb4e6ab1c7a7c0b6a7ca57416c173bee60838dc2a700ad491c041b54c2'),
    ('002_session_leases', '161785fa4145adc413eac699830dcf6317a9d43e27c9661f92852ec55ae435c4'),
    ('003_agent_features', '0b6b621fefa135b8a7f6e8fe95ed4dd98f4ed29a5d5277a9efcd29d5e72fa3d8'),
    ('004_session_engine', '021a20ddfad0a49cb43e97b5abd910445ef2c8ec5ecde5fca9aa0278d7437d42'),
    ('005_proxy_tokens', '6dac6c5894b8c9060118f9244ea794b30f99beee814c6f13812d2a8ab7961232');

COMMIT;
