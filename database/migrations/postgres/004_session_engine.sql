-- Who runs a session's turns: "builtin" (the agent loop) or "opencode".
ALTER TABLE sessions ADD COLUMN engine text NOT NULL DEFAULT 'builtin';
