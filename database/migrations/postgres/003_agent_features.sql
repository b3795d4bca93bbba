-- 003_agent_features (PostgreSQL): per-session agent options and stored permission requests.
-- Numbered 003 so that it applies whatever order 002 lands in.

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
