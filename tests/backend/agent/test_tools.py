"""The tools, run directly against a subprocess sandbox in a temporary directory."""

from __future__ import annotations

import asyncio
import shutil
from typing import Any

import pytest

from backend.agent.tools import TOOL_DEFINITIONS, Toolbox, ToolOutcome, truncate_middle
from backend.settings import Settings
from sandbox.base import ExecResult, SandboxError
from tests.backend.agent.conftest import TmpSandbox


@pytest.fixture
def toolbox() -> Toolbox:
    return Toolbox(Settings(shell_timeout_seconds=5, tool_output_max_bytes=2000))


async def call(toolbox: Toolbox, sandbox: Any, name: str, **args: Any) -> ToolOutcome:
    return await toolbox.run(name, args, sandbox)


def test_definitions_are_valid_tool_params(toolbox: Toolbox) -> None:
    names = [t["name"] for t in TOOL_DEFINITIONS]
    assert names == ["shell", "read_file", "write_file", "edit_file", "list_files", "search"]
    for tool in TOOL_DEFINITIONS:
        assert len(tool["description"]) > 40
        schema = tool["input_schema"]
        assert schema["type"] == "object"
        assert set(schema.get("required", [])) <= set(schema["properties"])
    tools = toolbox.definitions()
    assert tools[-1]["cache_control"] == {"type": "ephemeral"}
    assert "cache_control" not in TOOL_DEFINITIONS[-1]  # the module constant stays clean


# -- shell


async def test_shell_output_and_exit_code(toolbox, sandbox):
    out = await call(toolbox, sandbox, "shell", command="echo out; echo err >&2; exit 3")
    assert out == ToolOutcome("out\n[stderr]\nerr\n[exit code: 3]", False)
    out = await call(toolbox, sandbox, "shell", command="true")
    assert out == ToolOutcome("(no output)\n[exit code: 0]", False)


async def test_shell_timeout_is_an_error_and_capped(sandbox):
    toolbox = Toolbox(Settings(shell_timeout_seconds=0.3))
    out = await call(toolbox, sandbox, "shell", command="echo start; sleep 10", timeout=100)
    assert out.is_error
    assert "timed out after 0.3 s" in out.content


async def test_shell_output_is_truncated_with_a_note(toolbox, sandbox):
    out = await call(toolbox, sandbox, "shell", command="seq 1 5000")
    assert len(out.content.encode()) < 2200
    assert out.content.startswith("1\n2\n")
    assert "omitted" in out.content
    assert out.content.endswith("5000\n[exit code: 0]")


async def test_shell_bad_input(toolbox, sandbox):
    assert (await call(toolbox, sandbox, "shell")).is_error
    assert (await call(toolbox, sandbox, "shell", command=["ls"])).is_error
    assert (await call(toolbox, sandbox, "shell", command="  ")).is_error
    out = await call(toolbox, sandbox, "shell", command="echo hi", timeout="2")
    assert out == ToolOutcome("hi\n[exit code: 0]")
    assert (await call(toolbox, sandbox, "shell", command="echo", timeout=0)).is_error


# -- files


async def test_write_then_read_with_line_numbers(toolbox, sandbox):
    out = await call(
        toolbox, sandbox, "write_file", path="pkg/mod.py", content="a = 1\nb = 2\nc = 3\n"
    )
    assert out == ToolOutcome("Wrote 18 bytes (3 lines) to pkg/mod.py")
    out = await call(toolbox, sandbox, "read_file", path="pkg/mod.py")
    assert out == ToolOutcome("     1\ta = 1\n     2\tb = 2\n     3\tc = 3")
    out = await call(toolbox, sandbox, "read_file", path="pkg/mod.py", offset=2, limit=1)
    assert out.content == "     2\tb = 2\n[lines 2-2 of 3; use offset=3 to read on]"
    out = await call(toolbox, sandbox, "read_file", path="pkg/mod.py", offset=9)
    assert out.is_error and "past the end" in out.content


async def test_read_file_errors(toolbox, sandbox):
    (sandbox.root / "bin.dat").write_bytes(b"\x00\x01\x02binary")
    (sandbox.root / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (sandbox.root / "empty.txt").write_text("")
    (sandbox.root / "dir").mkdir()

    out = await call(toolbox, sandbox, "read_file", path="bin.dat")
    assert out.is_error and "binary file" in out.content
    assert (await call(toolbox, sandbox, "read_file", path="latin1.txt")).is_error
    assert await call(toolbox, sandbox, "read_file", path="empty.txt") == ToolOutcome(
        "(empty.txt is empty)"
    )
    out = await call(toolbox, sandbox, "read_file", path="nope.txt")
    assert out == ToolOutcome("Error: no such file or directory: nope.txt", True)
    out = await call(toolbox, sandbox, "read_file", path="dir")
    assert out.is_error and "is a directory" in out.content
    for escape in ("../outside.txt", "/etc/passwd", "a/../../b"):
        out = await call(toolbox, sandbox, "read_file", path=escape)
        assert out.is_error and "outside the workspace" in out.content, escape


async def test_read_file_escape_through_a_symlink(toolbox, sandbox, tmp_path):
    (tmp_path / "secret.txt").write_text("secret")
    (sandbox.root / "link").symlink_to(tmp_path / "secret.txt")
    out = await call(toolbox, sandbox, "read_file", path="link")
    assert out.is_error and "outside the workspace" in out.content


async def test_write_file_errors(toolbox, sandbox):
    assert (await call(toolbox, sandbox, "write_file", path="../x", content="")).is_error
    assert (await call(toolbox, sandbox, "write_file", path="", content="x")).is_error
    assert (await call(toolbox, sandbox, "write_file", path="f.txt")).is_error
    (sandbox.root / "d").mkdir()
    out = await call(toolbox, sandbox, "write_file", path="d", content="x")
    assert out.is_error and "is a directory" in out.content


async def test_edit_file(toolbox, sandbox):
    (sandbox.root / "f.py").write_text("x = 1\ny = 1\nz = 2\n")
    out = await call(
        toolbox, sandbox, "edit_file", path="f.py", old_string="z = 2", new_string="z = 3"
    )
    assert out == ToolOutcome("Replaced 1 occurrence in f.py")
    assert (sandbox.root / "f.py").read_text() == "x = 1\ny = 1\nz = 3\n"

    out = await call(toolbox, sandbox, "edit_file", path="f.py", old_string="= 1", new_string="= 9")
    assert out.is_error and "occurs 2 times" in out.content
    assert (sandbox.root / "f.py").read_text() == "x = 1\ny = 1\nz = 3\n"

    out = await call(
        toolbox,
        sandbox,
        "edit_file",
        path="f.py",
        old_string="= 1",
        new_string="= 9",
        replace_all=True,
    )
    assert out == ToolOutcome("Replaced 2 occurrences in f.py")
    assert (sandbox.root / "f.py").read_text() == "x = 9\ny = 9\nz = 3\n"

    out = await call(toolbox, sandbox, "edit_file", path="f.py", old_string="nope", new_string="x")
    assert out.is_error and "not found" in out.content
    out = await call(toolbox, sandbox, "edit_file", path="f.py", old_string="x", new_string="x")
    assert out.is_error
    out = await call(toolbox, sandbox, "edit_file", path="f.py", old_string="", new_string="x")
    assert out.is_error
    out = await call(
        toolbox, sandbox, "edit_file", path="missing.py", old_string="a", new_string="b"
    )
    assert out == ToolOutcome("Error: no such file or directory: missing.py", True)
    out = await call(toolbox, sandbox, "edit_file", path="../f.py", old_string="a", new_string="b")
    assert out.is_error and "outside the workspace" in out.content


async def test_list_files(toolbox, sandbox):
    (sandbox.root / "src").mkdir()
    (sandbox.root / "src" / "main.py").write_text("print()\n")
    (sandbox.root / "README").write_text("hi")
    assert await call(toolbox, sandbox, "list_files") == ToolOutcome("README  (2 bytes)\nsrc/")
    out = await call(toolbox, sandbox, "list_files", path="src")
    assert out == ToolOutcome("main.py  (8 bytes)")
    (sandbox.root / "empty").mkdir()
    assert await call(toolbox, sandbox, "list_files", path="empty") == ToolOutcome(
        "(empty is empty)"
    )
    assert (await call(toolbox, sandbox, "list_files", path="nope")).is_error
    out = await call(toolbox, sandbox, "list_files", path="README")
    assert out.is_error and "not a directory" in out.content
    assert (await call(toolbox, sandbox, "list_files", path="..")).is_error


# -- search


async def test_search(toolbox, sandbox):
    (sandbox.root / "src").mkdir()
    (sandbox.root / "src" / "a.py").write_text("def alpha():\n    return 1\n")
    (sandbox.root / "src" / "b.txt").write_text("alpha beta\n")
    (sandbox.root / "c.py").write_text("gamma\n")

    out = await call(toolbox, sandbox, "search", pattern="alpha")
    assert not out.is_error
    assert sorted(out.content.splitlines()) == ["src/a.py:1:def alpha():", "src/b.txt:1:alpha beta"]

    out = await call(toolbox, sandbox, "search", pattern="alpha", glob="*.py")
    assert [line.split(":")[0] for line in out.content.splitlines()] == ["src/a.py"]
    out = await call(toolbox, sandbox, "search", pattern="return", path="src")
    assert out.content == "src/a.py:2:    return 1"
    out = await call(toolbox, sandbox, "search", pattern="return", path="src/a.py")
    assert out.content == "src/a.py:2:    return 1"
    out = await call(toolbox, sandbox, "search", pattern="gam+a", path="src")
    assert out == ToolOutcome("No matches.")
    out = await call(toolbox, sandbox, "search", pattern="x", path="../")
    assert out.is_error and "outside the workspace" in out.content
    out = await call(toolbox, sandbox, "search", pattern="(unclosed")
    assert out.is_error and "search failed" in out.content
    assert (await call(toolbox, sandbox, "search", pattern="")).is_error


async def test_search_quotes_its_arguments(toolbox, sandbox):
    (sandbox.root / "q.txt").write_text("it's $HOME; rm -rf nothing\n")
    out = await call(toolbox, sandbox, "search", pattern="it's \\$HOME; rm")
    assert "q.txt:1:it's $HOME; rm -rf nothing" in out.content
    assert (sandbox.root / "q.txt").exists()


async def test_search_caps_its_output(toolbox, sandbox):
    (sandbox.root / "many.txt").write_text("".join(f"match {i}\n" for i in range(500)))
    out = await call(toolbox, sandbox, "search", pattern="match")
    assert "more matching lines" in out.content
    assert len(out.content.encode()) <= 2100


async def test_search_uses_rg_when_present(toolbox, sandbox):
    await call(toolbox, sandbox, "search", pattern="x", glob="*.md")
    command = sandbox.commands[-1]
    assert command.startswith("if command -v rg")
    assert "rg --line-number" in command and "grep -rnHE" in command
    if shutil.which("rg") is None:
        pytest.skip("ripgrep is not installed here; the grep branch was exercised above")


# -- failures of the sandbox itself


class BrokenSandbox(TmpSandbox):
    def __init__(self, root, exc: BaseException) -> None:
        super().__init__(root)
        self.exc = exc

    async def exec(self, command: str, **kwargs: Any) -> ExecResult:
        raise self.exc

    async def read_file(self, path: str) -> bytes:
        raise self.exc


async def test_sandbox_errors_become_error_results(toolbox, tmp_path):
    broken = BrokenSandbox(tmp_path / "w", SandboxError("the container is gone"))
    out = await call(toolbox, broken, "shell", command="ls")
    assert out == ToolOutcome("Error: the sandbox failed: the container is gone", True)
    unexpected = BrokenSandbox(tmp_path / "w", RuntimeError("boom"))
    out = await call(toolbox, unexpected, "read_file", path="a")
    assert out == ToolOutcome("Error: the tool failed unexpectedly (RuntimeError).", True)


async def test_cancellation_propagates(toolbox, tmp_path):
    broken = BrokenSandbox(tmp_path / "w", asyncio.CancelledError())
    with pytest.raises(asyncio.CancelledError):
        await call(toolbox, broken, "shell", command="ls")


async def test_unknown_tool_and_bad_arguments(toolbox, sandbox):
    out = await call(toolbox, sandbox, "rm_rf")
    assert out.is_error and "Unknown tool 'rm_rf'" in out.content
    out = await toolbox.run("shell", "ls", sandbox)  # type: ignore[arg-type]
    assert out.is_error


def test_truncate_middle_keeps_valid_utf8():
    text = "é" * 1000
    cut = truncate_middle(text, 101)
    assert cut.startswith("é" * 25) and cut.endswith("é" * 25)
    assert "bytes of output omitted" in cut
    assert truncate_middle("short", 100) == "short"


# -- .agent-tui/: agent-tui's own files, out of the file tools' sight


class NoRipgrepSandbox(TmpSandbox):
    """Runs the search's grep branch, as a sandbox without ripgrep would."""

    async def exec(self, command: str, **kwargs: Any) -> ExecResult:
        return await super().exec(command.replace("command -v rg", "false", 1), **kwargs)


@pytest.mark.parametrize("kind", ["rg", "grep"])
async def test_the_file_tools_never_show_or_touch_agent_tui(toolbox, tmp_path, kind):
    if kind == "rg" and shutil.which("rg") is None:
        pytest.skip("ripgrep is not installed here")
    sandbox = (TmpSandbox if kind == "rg" else NoRipgrepSandbox)(tmp_path / "w")
    (sandbox.root / ".agent-tui").mkdir()
    (sandbox.root / ".agent-tui" / "opencode-session").write_text("needle in agent-tui\n")
    (sandbox.root / "notes.txt").write_text("needle in notes\n")

    listed = await call(toolbox, sandbox, "list_files")
    assert listed == ToolOutcome("notes.txt  (16 bytes)")
    for glob in ("", "*", "opencode-session", ".agent-tui/*"):
        found = await call(toolbox, sandbox, "search", pattern="needle", glob=glob)
        assert "agent-tui" not in found.content.replace("needle in notes", ""), (glob, found)

    for name, args in (
        ("list_files", {"path": ".agent-tui"}),
        ("read_file", {"path": ".agent-tui/opencode-session"}),
        ("read_file", {"path": "./.agent-tui//opencode-session"}),
        ("write_file", {"path": ".agent-tui/opencode-session", "content": "x"}),
        ("write_file", {"path": ".agent-tui/new/file", "content": "x"}),
        (
            "edit_file",
            {"path": ".agent-tui/opencode-session", "old_string": "a", "new_string": "b"},
        ),
        ("search", {"pattern": "needle", "path": ".agent-tui"}),
    ):
        out = await call(toolbox, sandbox, name, **args)
        assert out.is_error and ".agent-tui/ holds agent-tui's own files" in out.content, (
            name,
            args,
            out,
        )
    assert (sandbox.root / ".agent-tui" / "opencode-session").read_text() == "needle in agent-tui\n"
    assert not (sandbox.root / ".agent-tui" / "new").exists()
