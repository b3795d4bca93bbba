"""The app as a new user meets it: ``agent-tui`` in a real terminal (tmux), driven by keys.

Needs tmux (skipped with a reason otherwise, failing under CI=true). The model
is the fake Anthropic server; the backend is the real embedded one.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import require
from tests.fakes.fake_anthropic import FakeAnthropic

AGENT_TUI = str(Path(sys.executable).parent / "agent-tui")


class Tmux:
    """One detached tmux session running a command."""

    def __init__(self, command: str, *, width: int = 120, height: int = 40) -> None:
        self.name = f"agent-tui-test-{uuid.uuid4().hex[:8]}"
        # A tmux server of its own: the shared default one exits with its last session,
        # racing the next test's `tmux new` ("server exited unexpectedly").
        self.tmux = ["tmux", "-L", self.name]
        # The trailing echo shows the exit code once the app has quit.
        script = f"{command}; echo EXITED $?; sleep 30"
        subprocess.run(
            [*self.tmux, "new", "-d", "-s", self.name, "-x", str(width), "-y", str(height), script],
            check=True,
        )

    def screen(self) -> str:
        return subprocess.run(
            [*self.tmux, "capture-pane", "-p", "-t", self.name],
            capture_output=True,
            text=True,
            check=False,
        ).stdout

    def keys(self, *keys: str) -> None:
        subprocess.run([*self.tmux, "send-keys", "-t", self.name, *keys], check=True)

    def type(self, text: str) -> None:
        subprocess.run([*self.tmux, "send-keys", "-t", self.name, "-l", text], check=True)

    def resize(self, width: int, height: int) -> None:
        subprocess.run(
            [*self.tmux, "resize-window", "-t", self.name, "-x", str(width), "-y", str(height)],
            check=True,
        )

    def wait_for(self, check: str | Callable[[str], bool], seconds: float = 20.0) -> str:
        deadline = time.monotonic() + seconds
        while True:
            screen = self.screen()
            if check(screen) if callable(check) else check in screen:
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"waited {seconds} s for {check!r}; the screen shows:\n{screen}"
                )
            time.sleep(0.1)

    def kill(self) -> None:
        subprocess.run([*self.tmux, "kill-server"], capture_output=True, check=False)


@pytest.fixture
def tmux_available() -> None:
    require(shutil.which("tmux") is not None, "tmux is not installed")


@pytest.fixture
def fake_model() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as fake:  # echo replies; "run: CMD" asks for the shell tool
        yield fake


def app_command(tmp_path: Path, fake_model: FakeAnthropic, *args: str) -> str:
    env = {
        "AGENT_TUI_DATA_DIR": str(tmp_path / "data"),
        "AGENT_TUI_CONFIG_DIR": str(tmp_path / "config"),
        "ANTHROPIC_API_KEY": "test",
        "ANTHROPIC_BASE_URL": fake_model.url,
        "AGENT_TUI_UNSAFE_LOCAL_SANDBOX": "false" if shutil.which("bwrap") else "true",
    }
    assignments = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    return f"env {assignments} {shlex.quote(AGENT_TUI)} {' '.join(shlex.quote(a) for a in args)}"


def test_a_new_user_session_in_tmux(
    tmux_available: None, tmp_path: Path, fake_model: FakeAnthropic
) -> None:
    tmux = Tmux(app_command(tmp_path, fake_model))
    try:
        tmux.wait_for(lambda s: "Sessions" in s and "Welcome to agent-tui" in s)
        tmux.wait_for("connected")

        tmux.type("hello there")
        tmux.keys("Enter")
        screen = tmux.wait_for("You said: hello there")
        assert "hello there" in screen.splitlines()[0]  # the new session is named after it

        tmux.type("run: echo tmux-ok")
        tmux.keys("Enter")
        screen = tmux.wait_for("The tool returned")
        assert "✔ shell" in screen and "echo tmux-ok" in screen
        tmux.wait_for(lambda s: "● idle" in s)

        tmux.resize(80, 24)
        screen = tmux.wait_for(lambda s: len(s.splitlines()[0]) <= 80 and "connected" in s)
        lines = screen.splitlines()
        assert "Sessions" in lines[1] and "● idle" in lines[-2], screen

        tmux.keys("C-q")
        tmux.wait_for("EXITED 0")
    finally:
        tmux.kill()


def test_a_bad_remote_url_is_explained_on_screen(
    tmux_available: None, tmp_path: Path, fake_model: FakeAnthropic
) -> None:
    command = app_command(
        tmp_path, fake_model, "--remote", "http://127.0.0.1:9", "--api-key", "aa_live_" + "x" * 32
    )
    tmux = Tmux(command, width=80, height=24)
    try:
        screen = tmux.wait_for("Cannot connect")
        assert "Cannot reach the Agent API" in screen and "127.0.0.1:9" in screen
        assert "Traceback" not in screen
        tmux.keys("Escape")
        screen = tmux.wait_for("EXITED")
        assert "EXITED 1" in screen and "Traceback" not in screen
    finally:
        tmux.kill()


@pytest.mark.parametrize("size", [(120, 40), (80, 24)])
def test_typed_at_launch_streams_a_reply_and_comes_back_after_a_relaunch(
    tmux_available: None, tmp_path: Path, fake_model: FakeAnthropic, size: tuple[int, int]
) -> None:
    width, height = size
    command = app_command(tmp_path, fake_model)
    tmux = Tmux(command, width=width, height=height)
    try:
        # At once, before the app has drawn anything: the terminal holds the keys.
        tmux.type("hello")
        tmux.keys("Enter")
        screen = tmux.wait_for("You said: hello", seconds=30)
        assert "Welcome to agent-tui" not in screen
        tmux.wait_for(lambda s: "● idle" in s)
        tmux.keys("C-q")
        tmux.wait_for("EXITED 0")
    finally:
        tmux.kill()

    tmux = Tmux(command, width=width, height=height)
    try:
        # No key pressed: the last conversation is on screen again.
        screen = tmux.wait_for(lambda s: "You said: hello" in s and "connected" in s, seconds=30)
        lines = [line for line in screen.splitlines() if line.strip()]
        assert any("█ hello" in line for line in lines), screen
        assert "● idle" in lines[-2], screen  # the status line, above the footer
        tmux.keys("C-q")
        tmux.wait_for("EXITED 0")
    finally:
        tmux.kill()
