"""The tools the model can call, run inside the session's ``Sandbox``.

``TOOL_DEFINITIONS`` are the Anthropic tool params sent with every model call;
``Toolbox.run`` executes one call and always answers with a ``ToolOutcome``:
bad input, paths outside the workspace, missing files, timeouts and sandbox
failures become ``is_error`` results the model can read and react to. Only
``asyncio.CancelledError`` (an interrupt) escapes, so the loop can stop the
turn; the sandbox kills a running command's processes before it propagates.
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from backend.errors import ApiError
from backend.settings import Settings
from sandbox.base import (
    RESERVED_DIR,
    FileNotFound,
    IsADirectory,
    NotADirectory,
    OutputCallback,
    ReservedPath,
    Sandbox,
    SandboxError,
    SandboxPathError,
    check_not_reserved,
    normalize_relative_path,
    visible_entries,
)

__all__ = [
    "MUTATING_TOOLS",
    "TOOL_DEFINITIONS",
    "ToolInputError",
    "ToolOutcome",
    "Toolbox",
    "truncate_middle",
]

# Tools that change the workspace or run code: permission mode "ask" waits for the
# user's approval of these, "read-only" refuses them. The others only read.
MUTATING_TOOLS = frozenset({"shell", "write_file", "edit_file"})

log = logging.getLogger(__name__)

DEFAULT_READ_LINES = 2000
MAX_LINE_CHARS = 2000
MAX_LIST_ENTRIES = 1000
MAX_SEARCH_LINES = 200
MAX_SEARCH_LINE_CHARS = 300
SEARCH_READ_BYTES = 256 * 1024
# A NUL byte in the first block is how git and grep tell binary files too.
BINARY_SNIFF_BYTES = 8192

TOOL_DEFINITIONS: list[dict[str, Any]] = [
    {
        "name": "shell",
        "description": (
            "Run a bash command in the workspace root and return its output (stdout, then "
            "stderr) followed by its exit code. Use it to build, run tests, use git, install "
            "packages, and inspect the system. Each call starts a fresh shell: `cd` and exported "
            "variables do not carry over, so chain commands with `&&`. Commands are "
            "non-interactive (no stdin); long output is cut in the middle. A command that runs "
            "past its timeout is killed."
        ),
        "input_schema": {
            "type": "object",
            "properties": {
                "command": {"type": "string", "description": "The bash command line to run."},
                "timeout": {
                    "type": "integer",
                    "minimum": 1,
                    "description": "Seconds before the command is killed (capped by the server).",
                },
            },
            "required": ["command"],
        },
    },
    {
        "name": "read_file",
        "description": (
            "Read a text file from the workspace. Each line is prefixed with its line number "
            "and a tab (like `cat -n`); the prefix is not part of the file, so leave it out of "
            "edit_file's old_string. Reads at most 2000 lines at a time: use offset and limit "
            "for large files. Binary files are refused."
        ),
        "input_schema": {
            "type": "object",
            "properties": {
                "path": {"type": "string", "description": "Path relative to the workspace root."},
                "offset": {
                    "type": "integer",
                    "minimum": 1,
                    "description": "First line to read, counting from 1 (default 1).",
                },
                "limit": {
                    "type": "integer",
                    "minimum": 1,
                    "description": "How many lines to read (default 2000).",
                },
            },
            "required": ["path"],
        },
    },
    {
        "name": "write_file",
        "description": (
            "Create a file, or overwrite it entirely, with the given content; missing parent "
            "directories are created. For a small change to an existing file prefer edit_file."
        ),
        "input_schema": {
            "type": "object",
            "properties": {
                "path": {"type": "string", "description": "Path relative to the workspace root."},
                "content": {"type": "string", "description": "The complete new file content."},
            },
            "required": ["path", "content"],
        },
    },
    {
        "name": "edit_file",
        "description": (
            "Replace an exact string in a text file. old_string must match the file exactly, "
            "including whitespace and indentation, and must occur exactly once unless "
            "replace_all is true; include a few surrounding lines to make it unique. Read the "
            "file first."
        ),
        "input_schema": {
            "type": "object",
            "properties": {
                "path": {"type": "string", "description": "Path relative to the workspace root."},
                "old_string": {"type": "string", "description": "The exact text to replace."},
                "new_string": {"type": "string", "description": "The text to put in its place."},
                "replace_all": {
                    "type": "boolean",
                    "description": "Replace every occurrence instead of exactly one (default false).",
                },
            },
            "required": ["path", "old_string", "new_string"],
        },
    },
    {
        "name": "list_files",
        "description": (
            "List one directory of the workspace (not recursive): sub-directories end with '/', "
            "files show their size in bytes. For a recursive view use shell with `find` or "
            "`git ls-files`."
        ),
        "input_schema": {
            "type": "object",
            "properties": {
                "path": {
                    "type": "string",
                    "description": "Directory relative to the workspace root (default: the root).",
                },
            },
        },
    },
    {
        "name": "search",
        "description": (
            "Search file contents for a regular expression and return matching lines as "
            "path:line:text. Uses ripgrep when the sandbox has it (Rust regex syntax, honours "
            ".gitignore, skips hidden files), else `grep -rnE` (POSIX extended regex). At most "
            "200 matching lines are shown."
        ),
        "input_schema": {
            "type": "object",
            "properties": {
                "pattern": {"type": "string", "description": "The regular expression to look for."},
                "path": {
                    "type": "string",
                    "description": "File or directory to search, relative to the workspace root (default: the root).",
                },
                "glob": {
                    "type": "string",
                    "description": "Only search files whose name matches this glob, e.g. '*.py'.",
                },
            },
            "required": ["pattern"],
        },
    },
]


@dataclass(frozen=True)
class ToolOutcome:
    """What a tool call answers: the text the model reads, and whether it failed."""

    content: str
    is_error: bool = False


class ToolInputError(Exception):
    """The model's arguments do not fit the tool's schema; the message says how."""


def truncate_middle(text: str, max_bytes: int) -> str:
    """``text`` cut to about ``max_bytes`` of UTF-8, keeping its head and tail.

    The middle is dropped because a command's first lines (what ran) and last
    lines (how it ended) are what the model needs most.
    """
    data = text.encode()
    if len(data) <= max_bytes:
        return text
    half = max(max_bytes // 2, 1)
    head = data[:half].decode(errors="ignore")
    tail = data[-half:].decode(errors="ignore")
    omitted = len(data) - len(head.encode()) - len(tail.encode())
    return f"{head}\n[... {omitted} bytes of output omitted ...]\n{tail}"


def _string(args: dict[str, Any], key: str, *, required: bool = True, default: str = "") -> str:
    value = args.get(key)
    if value is None:
        if required:
            raise ToolInputError(f"'{key}' is required")
        return default
    if not isinstance(value, str):
        raise ToolInputError(f"'{key}' must be a string")
    return value


def _integer(args: dict[str, Any], key: str, *, minimum: int = 1) -> int | None:
    value = args.get(key)
    if value is None:
        return None
    # Models sometimes send numbers as strings or floats; accept what is unambiguous.
    if isinstance(value, bool):
        raise ToolInputError(f"'{key}' must be an integer")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if not isinstance(value, int):
        raise ToolInputError(f"'{key}' must be an integer")
    if value < minimum:
        raise ToolInputError(f"'{key}' must be at least {minimum}")
    return value


def _boolean(args: dict[str, Any], key: str) -> bool:
    value = args.get(key, False)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if not isinstance(value, bool):
        raise ToolInputError(f"'{key}' must be true or false")
    return value


def _decode_text(data: bytes, path: str) -> str:
    if b"\x00" in data[:BINARY_SNIFF_BYTES]:
        raise ToolInputError(
            f"{path} is a binary file ({len(data)} bytes); it can't be shown as text"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ToolInputError(
            f"{path} is not UTF-8 text ({len(data)} bytes); use shell (e.g. `file`, `xxd`) to inspect it"
        ) from None


Handler = Callable[[dict[str, Any], Sandbox], Awaitable[ToolOutcome]]


class Toolbox:
    """Runs the model's tool calls against a ``Sandbox``, within the settings' limits."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._handlers: dict[str, Handler] = {
            "shell": self._shell,
            "read_file": self._read_file,
            "write_file": self._write_file,
            "edit_file": self._edit_file,
            "list_files": self._list_files,
            "search": self._search,
        }

    def definitions(self, *, cache: bool = True) -> list[dict[str, Any]]:
        """The tool params for a model call; with ``cache`` the last one carries a
        cache breakpoint, so the whole tool list is cached as one prefix."""
        tools = [dict(tool) for tool in TOOL_DEFINITIONS]
        if cache:
            tools[-1]["cache_control"] = {"type": "ephemeral"}
        return tools

    async def run(
        self,
        name: str,
        arguments: dict[str, Any],
        sandbox: Sandbox,
        *,
        on_output: OutputCallback | None = None,
    ) -> ToolOutcome:
        """Run one tool call. Never raises, except ``asyncio.CancelledError``.
        ``on_output`` hears a shell command's stdout/stderr as it is written."""
        handler = self._handlers.get(name)
        if handler is None:
            known = ", ".join(self._handlers)
            return ToolOutcome(f"Unknown tool {name!r}. Available tools: {known}.", True)
        if not isinstance(arguments, dict):
            return ToolOutcome("Invalid input: the arguments must be a JSON object.", True)
        path = arguments.get("path") if isinstance(arguments.get("path"), str) else ""
        try:
            if name == "shell":
                return await self._shell(arguments, sandbox, on_output=on_output)
            return await handler(arguments, sandbox)
        except ToolInputError as exc:
            return ToolOutcome(f"Error: {exc}", True)
        except ReservedPath as exc:
            return ToolOutcome(f"Error: {path!r} is not available: {exc.message}.", True)
        except SandboxPathError:
            return ToolOutcome(
                f"Error: {path!r} is outside the workspace. Use a path relative to the "
                "workspace root, without '..' or a leading '/'.",
                True,
            )
        except FileNotFound:
            return ToolOutcome(f"Error: no such file or directory: {path}", True)
        except IsADirectory:
            return ToolOutcome(f"Error: {path} is a directory; use list_files to see it.", True)
        except NotADirectory:
            return ToolOutcome(f"Error: {path} (or a parent of it) is not a directory.", True)
        except SandboxError as exc:
            return ToolOutcome(f"Error: the sandbox failed: {exc.message}", True)
        except ApiError as exc:
            return ToolOutcome(f"Error: {exc.message}", True)
        except Exception as exc:
            # A bug or an unexpected provider failure: tell the model, keep the turn alive.
            log.exception("tool %s failed", name)
            return ToolOutcome(f"Error: the tool failed unexpectedly ({type(exc).__name__}).", True)

    # -- the tools

    async def _shell(
        self, args: dict[str, Any], sandbox: Sandbox, *, on_output: OutputCallback | None = None
    ) -> ToolOutcome:
        command = _string(args, "command")
        if not command.strip():
            raise ToolInputError("'command' is empty")
        limit = self.settings.shell_timeout_seconds
        requested = _integer(args, "timeout")
        timeout = min(float(requested), limit) if requested is not None else limit
        result = await sandbox.exec(
            command,
            timeout=timeout,
            max_output_bytes=self.settings.tool_output_max_bytes,
            on_output=on_output,
        )
        parts = []
        if result.stdout:
            parts.append(result.stdout.rstrip("\n"))
        if result.stderr:
            parts.append("[stderr]\n" + result.stderr.rstrip("\n"))
        output = truncate_middle("\n".join(parts), self.settings.tool_output_max_bytes)
        if result.timed_out:
            note = f"[timed out after {timeout:g} s; the command was killed]"
            return ToolOutcome(f"{output}\n{note}" if output else note, True)
        footer = f"[exit code: {result.exit_code}]"
        return ToolOutcome(f"{output}\n{footer}" if output else f"(no output)\n{footer}")

    async def _read_file(self, args: dict[str, Any], sandbox: Sandbox) -> ToolOutcome:
        path = _string(args, "path")
        offset = _integer(args, "offset") or 1
        limit = _integer(args, "limit") or DEFAULT_READ_LINES
        check_not_reserved(path)
        text = _decode_text(await sandbox.read_file(path), path)
        if not text:
            return ToolOutcome(f"({path} is empty)")
        lines = text.splitlines()
        if offset > len(lines):
            raise ToolInputError(f"offset {offset} is past the end of {path} ({len(lines)} lines)")
        end = min(offset - 1 + limit, len(lines))
        numbered = []
        for number in range(offset, end + 1):
            line = lines[number - 1]
            if len(line) > MAX_LINE_CHARS:
                line = line[:MAX_LINE_CHARS] + " [... line cut ...]"
            numbered.append(f"{number:6}\t{line}")
        body = truncate_middle("\n".join(numbered), self.settings.tool_output_max_bytes)
        if offset > 1 or end < len(lines):
            more = f"; use offset={end + 1} to read on" if end < len(lines) else ""
            body += f"\n[lines {offset}-{end} of {len(lines)}{more}]"
        return ToolOutcome(body)

    async def _write_file(self, args: dict[str, Any], sandbox: Sandbox) -> ToolOutcome:
        path = _string(args, "path")
        content = _string(args, "content")
        if not check_not_reserved(path):
            raise ToolInputError("'path' must name a file, not the workspace root")
        data = content.encode()
        await sandbox.write_file(path, data)
        return ToolOutcome(f"Wrote {len(data)} bytes ({len(content.splitlines())} lines) to {path}")

    async def _edit_file(self, args: dict[str, Any], sandbox: Sandbox) -> ToolOutcome:
        path = _string(args, "path")
        old = _string(args, "old_string")
        new = _string(args, "new_string")
        replace_all = _boolean(args, "replace_all")
        if not old:
            raise ToolInputError(
                "'old_string' is empty; use write_file to create or overwrite a file"
            )
        if old == new:
            raise ToolInputError("'old_string' and 'new_string' are the same; nothing to change")
        check_not_reserved(path)
        text = _decode_text(await sandbox.read_file(path), path)
        count = text.count(old)
        if count == 0:
            raise ToolInputError(
                f"old_string was not found in {path}. It must match exactly, including "
                "whitespace; read the file again to copy it."
            )
        if count > 1 and not replace_all:
            raise ToolInputError(
                f"old_string occurs {count} times in {path}. Include more surrounding "
                "lines to make it unique, or set replace_all to true."
            )
        updated = text.replace(old, new) if replace_all else text.replace(old, new, 1)
        await sandbox.write_file(path, updated.encode())
        replaced = count if replace_all else 1
        plural = "s" if replaced != 1 else ""
        return ToolOutcome(f"Replaced {replaced} occurrence{plural} in {path}")

    async def _list_files(self, args: dict[str, Any], sandbox: Sandbox) -> ToolOutcome:
        path = _string(args, "path", required=False)
        check_not_reserved(path)
        entries = visible_entries(await sandbox.list_dir(path))
        where = normalize_relative_path(path) or "the workspace root"
        if not entries:
            return ToolOutcome(f"({where} is empty)")
        lines = [
            f"{e.name}/" if e.is_directory else f"{e.name}  ({e.size} bytes)"
            for e in entries[:MAX_LIST_ENTRIES]
        ]
        if len(entries) > MAX_LIST_ENTRIES:
            lines.append(f"[... {len(entries) - MAX_LIST_ENTRIES} more entries not shown]")
        return ToolOutcome("\n".join(lines))

    async def _search(self, args: dict[str, Any], sandbox: Sandbox) -> ToolOutcome:
        pattern = _string(args, "pattern")
        if not pattern:
            raise ToolInputError("'pattern' is empty")
        target = check_not_reserved(_string(args, "path", required=False)) or "."
        glob = _string(args, "glob", required=False)
        q = shlex.quote
        rg = ["rg", "--line-number", "--with-filename", "--no-heading", "--color=never"]
        rg += [f"--max-columns={MAX_SEARCH_LINE_CHARS}", "--max-columns-preview"]
        grep = ["grep", "-rnHE", "--color=never", "--exclude-dir=.git"]
        if glob:
            rg += ["--glob", q(glob)]
            grep += [f"--include={q(glob)}"]
        # .agent-tui/ is agent-tui's own (rg skips hidden directories anyway, grep does
        # not); last, so no glob of the model's brings it back (rg: the last match wins).
        rg += ["--glob", q(f"!/{RESERVED_DIR}/")]
        grep += [f"--exclude-dir={RESERVED_DIR}"]
        # With no path operand both tools search the working directory and print
        # paths without a "./" prefix, the same paths the other tools take.
        tail = ["-e", q(pattern)] + (["--", q(target)] if target != "." else [])
        # One exec picks the tool inside the sandbox: whether rg exists is the sandbox's business.
        command = (
            f"if command -v rg >/dev/null 2>&1; then {' '.join(rg + tail)}; "
            f"else {' '.join(grep + tail)}; fi"
        )
        result = await sandbox.exec(
            command,
            timeout=self.settings.shell_timeout_seconds,
            # Room for more than MAX_SEARCH_LINES lines, so the cut below is by whole
            # lines and can say how many matches were left out.
            max_output_bytes=max(self.settings.tool_output_max_bytes, SEARCH_READ_BYTES),
        )
        if result.timed_out:
            return ToolOutcome("Error: the search timed out; narrow it with path or glob.", True)
        if result.exit_code == 1 and not result.stdout.strip():
            return ToolOutcome("No matches.")
        detail = truncate_middle(result.stderr.strip() or f"exit code {result.exit_code}", 2000)
        if result.exit_code not in (0, 1) and not result.stdout.strip():
            return ToolOutcome(f"Error: the search failed: {detail}", True)
        lines = [line for line in result.stdout.splitlines() if line]
        shown = [
            line if len(line) <= MAX_SEARCH_LINE_CHARS else line[:MAX_SEARCH_LINE_CHARS] + " [...]"
            for line in lines[:MAX_SEARCH_LINES]
        ]
        if result.truncated:
            shown.append("[... the output was cut; narrow the search with path or glob]")
        elif len(lines) > MAX_SEARCH_LINES:
            shown.append(
                f"[... {len(lines) - MAX_SEARCH_LINES} more matching lines; narrow the search]"
            )
        if result.exit_code not in (0, 1):
            # ripgrep and grep exit 2 when some files could not be read but still print matches.
            shown.append(f"[some files could not be searched: {detail}]")
        return ToolOutcome(truncate_middle("\n".join(shown), self.settings.tool_output_max_bytes))
