"""The HTTP API: thin routes over the session actors and the store."""
