"""Per-session actors: one owner of each session's state, sandbox and event stream."""
