"""agent-tui: run coding-agent sessions from a terminal."""

__version__ = "0.1.0"
