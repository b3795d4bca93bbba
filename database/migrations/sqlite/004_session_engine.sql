-- Who runs a session's turns: "builtin" (the agent loop) or "opencode".
ALTER TABLE sessions ADD COLUMN engine TEXT NOT NULL DEFAULT 'builtin';
