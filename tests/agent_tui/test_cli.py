"""The ``agent-tui`` command as a user runs it: keys, db migrate, serve and its shutdown."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

AGENT_TUI = str(Path(sys.executable).parent / "agent-tui")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    values = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ANTHROPIC_", "UPSTASH_", "DATABASE_URL", "MODAL_"))
    }
    values.update(
        AGENT_TUI_DATA_DIR=str(tmp_path / "data"),
        AGENT_TUI_CONFIG_DIR=str(tmp_path / "config"),
        DATABASE_URL=str(tmp_path / "data" / "cli.db"),
    )
    return values


def run(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([AGENT_TUI, *args], env=env, capture_output=True, text=True, timeout=60)
    if check and result.returncode != 0:
        raise AssertionError(
            f"agent-tui {' '.join(args)} failed ({result.returncode}): {result.stderr}"
        )
    return result


def test_keys_create_list_revoke(env: dict[str, str]) -> None:
    created = json.loads(
        run(env, "keys", "create", "--name", "ops", "--scope", "admin", "--json").stdout
    )
    assert created["key"].startswith("aa_live_") and len(created["key"]) == 40
    assert created["scopes"] == ["admin", "sessions"] and created["userId"] == "default"
    plain = run(env, "keys", "create", "--name", "ci", "--env", "test", "--user", "bob")
    assert plain.stdout.strip().startswith("aa_test_") and "not shown again" in plain.stderr
    listed = json.loads(run(env, "keys", "list", "--json").stdout)
    assert [k["name"] for k in listed] == ["ops"] and "key" not in listed[0]
    assert [
        k["name"] for k in json.loads(run(env, "keys", "list", "--user", "bob", "--json").stdout)
    ] == ["ci"]
    run(env, "keys", "revoke", created["id"])
    assert json.loads(run(env, "keys", "list", "--json").stdout)[0]["revokedAt"]
    bad = run(env, "keys", "revoke", "not-an-id", check=False)
    assert bad.returncode == 2 and "not a key id" in bad.stderr
    past = run(
        env, "keys", "create", "--name", "x", "--expires", "2001-01-01T00:00:00Z", check=False
    )
    assert past.returncode == 2 and "future" in past.stderr


def test_db_migrate_is_idempotent(env: dict[str, str]) -> None:
    first = run(env, "db", "migrate").stdout
    assert first.startswith("applied: ") and "001" in first
    assert "up to date" in run(env, "db", "migrate").stdout


def test_bad_settings_are_reported_not_raised(env: dict[str, str]) -> None:
    result = run({**env, "RATE_LIMIT_DEFAULT": "lots"}, "db", "migrate", check=False)
    assert (
        result.returncode == 2
        and "RATE_LIMIT_DEFAULT" in result.stderr
        and "Traceback" not in result.stderr
    )


def test_unreachable_database_is_a_clear_error(env: dict[str, str]) -> None:
    result = run(
        {**env, "DATABASE_URL": "postgresql://postgres@127.0.0.1:9/none"},
        "keys",
        "list",
        check=False,
    )
    assert (
        result.returncode == 1
        and "DATABASE_URL" in result.stderr
        and "Traceback" not in result.stderr
    )


def test_serve_refuses_an_unisolated_local_sandbox(env: dict[str, str]) -> None:
    # No bwrap on this PATH (nor anything else): the check must refuse, not crash.
    result = run({**env, "PATH": "/nonexistent"}, "serve", "--port", "1", check=False)
    assert result.returncode == 2
    assert "bubblewrap" in result.stderr and "--unsafe-local-sandbox" in result.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_shuts_down_gracefully_closing_streams(env: dict[str, str]) -> None:
    key = json.loads(run(env, "keys", "create", "--name", "t", "--json").stdout)["key"]
    port = _free_port()
    proc = subprocess.Popen(
        [AGENT_TUI, "serve", "--port", str(port), "--unsafe-local-sandbox"],
        env={**env, "ANTHROPIC_API_KEY": "unused"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/health", timeout=0.5).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        headers = {"Authorization": f"Bearer {key}"}
        session = httpx.post(f"{url}/v1/sessions", headers=headers, timeout=10).json()
        assert session["status"] == "starting"
        with httpx.stream(
            "GET", f"{url}/v1/sessions/{session['id']}/events?after=0", headers=headers, timeout=30
        ) as r:
            assert r.status_code == 200
            lines = r.iter_lines()
            assert next(lines).startswith("id: ")
            proc.send_signal(signal.SIGTERM)
            started = time.monotonic()
            for _ in lines:  # the server ends the stream; it does not hang
                pass
            assert time.monotonic() - started < 10
        # uvicorn re-raises the signal it handled once it has shut down: the
        # conventional exit status for a process ended by SIGTERM.
        assert proc.wait(15) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = proc.stderr.read() if proc.stderr else ""
    assert "Traceback" not in stderr, stderr
    assert "Application shutdown complete" in stderr, stderr


def test_keys_create_options_have_help_and_list_prints_a_header(env: dict[str, str]) -> None:
    helptext = run(env, "keys", "create", "--help").stdout
    lines = [ln.strip() for ln in helptext.splitlines()] + [""]
    for option in ("--name", "--env", "--json"):
        index = next(i for i, ln in enumerate(lines) if ln.startswith(option))
        # argparse puts the help after the option's metavar, or on the next line.
        words = lines[index].split()
        own_line = len(words) > (1 if option == "--json" else 2)
        next_line = lines[index + 1] and not lines[index + 1].startswith("-")
        assert own_line or next_line, f"{option} has no help"
    run(env, "keys", "create", "--name", "laptop")
    lines = run(env, "keys", "list").stdout.splitlines()
    assert lines[0].split() == ["ID", "KEY", "USER", "SCOPES", "STATE", "NAME"]
    assert lines[1].split()[-1] == "laptop" and lines[1].split()[4] == "active"
