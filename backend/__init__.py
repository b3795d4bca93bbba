"""The Agent API backend: HTTP API, auth, rate limits, session actors, agent loop, store."""

__version__ = "0.1.0"
