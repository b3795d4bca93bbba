"""Slash commands typed in the prompt, and completion of commands and ``@path``s.

``/model``, ``/compact`` and the others run an action instead of sending a
message; ``@path`` in a message names a workspace file whose content is
attached to the message when it is sent.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

# name -> (argument hint, help)
COMMANDS: dict[str, tuple[str, str]] = {
    "new": ("[opencode]", "start a new session (opencode: its turns run in OpenCode)"),
    "model": ("[name]", "choose the session's model (a name sets it at once)"),
    "compact": ("", "compact the conversation the model sees, now"),
    "permissions": ("auto|ask|read-only", "how tool calls are approved"),
    "thinking": ("on|off", "extended thinking, for models that have it"),
    "rename": ("[title]", "rename the session"),
    "help": ("", "list these commands"),
}
PERMISSION_MODES = ("auto", "ask", "read-only")
_COMMAND_LIKE = re.compile(r"^/[a-z][a-z-]*$")
_MENTION = re.compile(r"(?<!\S)@([^\s@]+)")
# Attached files are cut at this size (the message limit is 100,000 characters).
MAX_ATTACH_CHARS = 40_000


@dataclass(frozen=True)
class SlashCommand:
    """A parsed command: its name and the rest of the line."""

    name: str
    argument: str


def parse(text: str) -> SlashCommand | None:
    """The command ``text`` is, or None when it is a message."""
    stripped = text.strip()
    if not stripped.startswith("/"):
        return None
    head, _, rest = stripped.partition(" ")
    name = head[1:]
    if name in COMMANDS:
        return SlashCommand(name, rest.strip())
    return None


def looks_like_command(text: str) -> bool:
    """``/word`` that is not a known command (a typo, rather than a message)."""
    head = text.strip().partition(" ")[0]
    return bool(_COMMAND_LIKE.match(head)) and head[1:] not in COMMANDS


def help_text() -> str:
    """One line per command."""
    return (
        "\n".join(
            f"/{name} {hint}".rstrip() + f" — {text}" for name, (hint, text) in COMMANDS.items()
        )
        + "\n@path in a message attaches that workspace file (Tab completes)."
    )


def command_completions(text: str) -> list[str]:
    """Commands that complete ``text`` (the whole prompt, while it is ``/prefix``)."""
    if not text.startswith("/") or " " in text or "\n" in text:
        return []
    return [f"/{name}" for name in COMMANDS if name.startswith(text[1:])]


def mention_at_end(text: str) -> str | None:
    """The ``@path`` being typed at the end of ``text`` (without the ``@``)."""
    match = re.search(r"(?:^|\s)@([^\s@]*)$", text)
    return match.group(1) if match else None


def split_mention(path: str) -> tuple[str, str]:
    """(directory to list, name prefix) of a partly typed path."""
    directory, _, prefix = path.rpartition("/")
    return directory, prefix


def mentions(text: str) -> list[str]:
    """The ``@path``s of a message, in order, without duplicates."""
    seen: list[str] = []
    for match in _MENTION.finditer(text):
        path = match.group(1).rstrip(".,;:!?)")
        if path and path not in seen:
            seen.append(path)
    return seen


def attachment(path: str, content: str) -> str:
    """A file's content as appended to the message."""
    if len(content) > MAX_ATTACH_CHARS:
        content = (
            content[:MAX_ATTACH_CHARS]
            + f"\n… ({len(content) - MAX_ATTACH_CHARS:,} more characters not attached)"
        )
    return f'\n\n<file path="{posixpath.normpath(path)}">\n{content}\n</file>'
