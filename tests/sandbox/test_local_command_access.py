"""``LocalSandbox.set_command_env``: every command sees the extra environment and
reaches the server's ``host_app`` at ``{host_url}``, even without network, and
nothing of it outlives the sandbox."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from sandbox.local import LocalSandboxProvider, bwrap_available
from tests.conftest import require

SESSION = "0c5e7a52-3f41-4bc8-9d0a-1f2e3d4c5b6a"


async def host_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A tiny ASGI app: answers with the path and the x-api-key it was given."""
    if scope["type"] != "http":
        return
    headers = dict(scope["headers"])
    body = f"{scope['path']} {headers.get(b'x-api-key', b'-').decode()}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


@pytest.mark.parametrize(
    ("isolation", "network"), [("bwrap", False), ("bwrap", True), ("none", True)]
)
async def test_commands_reach_the_host_app(tmp_path: Path, isolation: str, network: bool) -> None:
    if isolation == "bwrap":
        require(bwrap_available(), "bubblewrap (bwrap) is not usable here")
    provider = LocalSandboxProvider(tmp_path / "sandboxes", isolation=isolation, network=network)
    try:
        sandbox = await provider.create(SESSION)
        before = await sandbox.exec("echo ${PROXY_URL:-unset}", timeout=20)
        assert before.stdout.strip() == "unset"
        await sandbox.set_command_env(
            {"PROXY_URL": "{host_url}/v1/x", "PROXY_KEY": "atp_test"}, host_app=host_app
        )
        result = await sandbox.exec(
            'echo "$PROXY_URL"; curl -sS -H "x-api-key: $PROXY_KEY" "$PROXY_URL"; echo; exit 7',
            timeout=30,
        )
        url, answer = result.stdout.split("\n")[:2]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1/x"), result
        assert answer == "/v1/x atp_test", result
        assert result.exit_code == 7  # the command's own status passes through the relay
        # Two commands at once: each has a relay (and a port) of its own.
        both = await asyncio.gather(
            *(
                sandbox.exec('curl -sS -H "x-api-key: $PROXY_KEY" "$PROXY_URL"', timeout=30)
                for _ in range(2)
            )
        )
        assert [r.stdout for r in both] == ["/v1/x atp_test"] * 2
        # Cleared: later commands see nothing of it.
        await sandbox.set_command_env({})
        after = await sandbox.exec("echo ${PROXY_URL:-unset} ${PROXY_KEY:-unset}", timeout=20)
        assert after.stdout.strip() == "unset unset"
    finally:
        await provider.close()


async def test_the_app_stops_with_the_sandbox(tmp_path: Path) -> None:
    provider = LocalSandboxProvider(tmp_path / "sandboxes", isolation="none")
    try:
        sandbox = await provider.create(SESSION)
        await sandbox.set_command_env({"PROXY_URL": "{host_url}"}, host_app=host_app)
        access = sandbox._access
        assert access is not None and access._task is not None
        task = access._task
        await provider.pause(sandbox)
        assert task.done() and sandbox._access is None
    finally:
        await provider.close()
