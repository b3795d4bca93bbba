-- 001_init (SQLite): the same tables as migrations/postgres/001_init.sql.
-- Types: ids are canonical lowercase UUID text; times are UTC text in exactly one
-- format, 'YYYY-MM-DDTHH:MM:SS.mmmZ', so that comparing and sorting them as text
-- is comparing them as times; JSON columns (and api_keys.scopes) are JSON text.

CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL,
    name          TEXT NOT NULL,
    -- SHA-256 hex digest of the full key; the key itself is never stored.
    key_hash      TEXT NOT NULL UNIQUE,
    prefix        TEXT NOT NULL,
    last4         TEXT NOT NULL,
    environment   TEXT NOT NULL,
    scopes        TEXT NOT NULL DEFAULT '[]',
    created_at    TEXT NOT NULL,
    last_used_at  TEXT,
    expires_at    TEXT,
    revoked_at    TEXT
);
CREATE INDEX api_keys_user_created_idx ON api_keys (user_id, created_at DESC, id DESC);

CREATE TABLE sessions (
    id                 TEXT PRIMARY KEY,
    user_id            TEXT NOT NULL,
    -- The key that created the session; no foreign key, keys are only ever revoked.
    api_key_id         TEXT,
    status             TEXT NOT NULL,
    title              TEXT,
    repo               TEXT,
    model              TEXT NOT NULL,
    system_prompt      TEXT,
    sandbox_provider   TEXT NOT NULL DEFAULT 'local',
    sandbox_id         TEXT,
    sandbox_state      TEXT NOT NULL DEFAULT 'none',
    snapshot_id        TEXT,
    last_seq           INTEGER NOT NULL DEFAULT 0,
    input_tokens       INTEGER NOT NULL DEFAULT 0,
    output_tokens      INTEGER NOT NULL DEFAULT 0,
    cache_read_tokens  INTEGER NOT NULL DEFAULT 0,
    sandbox_seconds    REAL NOT NULL DEFAULT 0,
    message_count      INTEGER NOT NULL DEFAULT 0,
    error              TEXT,
    created_at         TEXT NOT NULL,
    last_activity_at   TEXT NOT NULL
);
-- Serves the newest-first listing and its (created_at, id) cursor.
CREATE INDEX sessions_user_created_idx ON sessions (user_id, created_at DESC, id DESC);
-- Serves the sweeps over every user's sessions in some statuses.
CREATE INDEX sessions_status_idx ON sessions (status);

CREATE TABLE messages (
    -- Insertion order (the rowid): breaks ties between messages with the same created_at.
    pos             INTEGER PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    session_id      TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    role            TEXT NOT NULL,
    content         TEXT NOT NULL,
    tool_calls      TEXT NOT NULL DEFAULT '[]',
    stop_reason     TEXT,
    usage           TEXT,
    model_messages  TEXT NOT NULL DEFAULT '[]',
    created_at      TEXT NOT NULL
);
CREATE INDEX messages_session_created_idx ON messages (session_id, created_at, pos);

CREATE TABLE events (
    session_id  TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL,
    type        TEXT NOT NULL,
    data        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (session_id, seq)
) WITHOUT ROWID;

CREATE TABLE usage_records (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL,
    -- No foreign key: usage is kept even if a session is ever deleted.
    session_id  TEXT,
    event_type  TEXT NOT NULL,
    quantity    REAL NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX usage_records_user_created_idx ON usage_records (user_id, created_at);
