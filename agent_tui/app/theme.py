"""The app's own themes; Textual's built-in ones stay available in the palette."""

from __future__ import annotations

from textual.theme import Theme

AGENT_DARK = Theme(
    name="agent-dark",
    primary="#7aa2f7",
    secondary="#bb9af7",
    accent="#ff9e64",
    warning="#e0af68",
    error="#f7768e",
    success="#9ece6a",
    foreground="#c0caf5",
    background="#1a1b26",
    surface="#24283b",
    panel="#2f3549",
    dark=True,
)

AGENT_LIGHT = Theme(
    name="agent-light",
    primary="#2e59c6",
    secondary="#7847bd",
    accent="#b15c00",
    warning="#8f5e00",
    error="#c4314b",
    success="#2f7a18",
    foreground="#24292f",
    background="#f6f8fa",
    surface="#ffffff",
    panel="#e6eaef",
    dark=False,
)

THEMES = (AGENT_DARK, AGENT_LIGHT)
DEFAULT_THEME = AGENT_DARK.name
