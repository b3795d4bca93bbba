"""The model proxy in the built-in engine's sandboxes: the shell tool's commands
find ANTHROPIC_BASE_URL and ANTHROPIC_API_KEY (the session's proxy token, never
the server's key), reach the proxy without network, and the token dies with a
pause or a delete and is reissued on resume."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from sandbox.local import bwrap_available
from sandbox.modal_provider import ModalSandboxProvider
from tests.backend.api.conftest import Api, api_for, make_settings
from tests.backend.api.test_sessions import collect, new_session
from tests.conftest import require
from tests.fakes.fake_anthropic import FakeAnthropic, reply
from tests.fakes.fake_modal import FakeModal, FakeModalCloud

SERVER_KEY = "sk-ant-server-only-key-8c41"
BODY = json.dumps(
    {
        "model": "claude-sonnet-5-5",
        "max_tokens": 50,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
)


def call_model(other_token: str) -> str:
    """What a tool in the sandbox would do: call the model through the proxy with
    the token it was given (and, for the test, show what it was given and could
    see, and try ``other_token``)."""
    headers = "-H 'content-type: application/json' -H 'anthropic-version: 2023-06-01'"
    url = '"$ANTHROPIC_BASE_URL/v1/messages"'
    environ = "cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n'"
    return (
        'echo "token=$ANTHROPIC_API_KEY"; echo "base=$ANTHROPIC_BASE_URL"; '
        f"curl -sS -N {url} -H \"x-api-key: $ANTHROPIC_API_KEY\" {headers} -d '{BODY}'; echo; "
        f"echo \"forged=$(curl -s -o /dev/null -w '%{{http_code}}' {url} "
        f"-H 'x-api-key: {other_token}' {headers} -d '{BODY}')\"; "
        f'echo "key-in-env=$(env | grep -c {SERVER_KEY})"; '
        f'echo "key-in-proc=$({environ} | grep -c {SERVER_KEY})"; '
        f'echo "token-in-proc=$({environ} | grep -c ^ANTHROPIC_API_KEY=atp_)"'
    )


@pytest.fixture
async def sandbox_api(tmp_path: Path, fake_model: FakeAnthropic) -> AsyncIterator[Api]:
    require(bwrap_available(), "bubblewrap (bwrap) is not usable here")
    fake_model.api_key = SERVER_KEY  # the fake refuses every other key
    settings = make_settings(
        tmp_path,
        fake_model.url,
        anthropic_api_key=SERVER_KEY,
        local_sandbox_network=False,  # serve's default: no network in the sandbox
    )
    async with api_for(settings, fake_model) as running:
        yield running


def _lines(output: str) -> dict[str, str]:
    """The ``name=value`` lines the command printed."""
    found = (re.match(r"([a-z-]+)=(.*)$", line) for line in output.splitlines())
    return {m.group(1): m.group(2) for m in found if m}


async def _run_tool_turn(
    api: Api, key: str, sid: str, command: str, *, calls_model: bool = True
) -> dict[str, Any]:
    """One turn in which the model runs ``command`` with the shell tool (and the
    command's own model call gets an answer); the tool call's stored block."""
    api.model.enqueue(reply().tool_use("shell", {"command": command}))
    if calls_model:
        api.model.enqueue(reply().text("from the sandbox", chunks=["from ", "the ", "sandbox"]))
    api.model.enqueue(reply().text("done"))
    await collect(api, "POST", f"/v1/sessions/{sid}/messages", key, json={"content": "go"})
    r = await api.http.get(f"/v1/sessions/{sid}/messages", headers=api.auth(key))
    tools = [b for b in r.json()["messages"][-1]["blocks"] if b["type"] == "tool_use"]
    assert len(tools) == 1, r.json()
    return tools[0]


async def _proxy_status(api: Api, sid: str, token: str) -> int:
    """The proxy's status for ``token`` on ``sid``'s route, called from outside
    (the fake model answers with its default reply)."""
    r = await api.http.post(
        f"/v1/model-proxy/{sid}/v1/messages",
        content=BODY.replace('"stream": true', '"stream": false'),
        headers={"x-api-key": token, "content-type": "application/json"},
    )
    return r.status_code


async def test_shell_commands_call_the_model_through_the_proxy(sandbox_api: Api) -> None:
    api = sandbox_api
    key = await api.key()
    sid = await new_session(api, key)
    other = await new_session(api, key)
    other_token = await api.app.state.model_proxy.tokens.mint(other, "alice")

    tool = await _run_tool_turn(api, key, sid, call_model(other_token))
    out = tool["result"]
    seen = _lines(out)
    token = seen["token"]
    assert token.startswith("atp_") and token != SERVER_KEY, out
    assert seen["base"].startswith("http://127.0.0.1:"), out
    assert seen["base"].endswith(f"/v1/model-proxy/{sid}"), out
    # The answer streamed through (SSE, three text deltas) from the fake model,
    # which was called with the server's key and never saw the token.
    assert out.count('"text_delta"') == 3 and "event: message_stop" in out, out
    assert api.model.message_requests[1].headers.get("x-api-key") == SERVER_KEY
    assert all(token not in str(r.headers) for r in api.model.requests)
    # Another session's token is refused; the server's key is nowhere in the sandbox.
    assert seen["forged"] == "401", out
    assert (seen["key-in-env"], seen["key-in-proc"]) == ("0", "0"), out
    assert int(seen["token-in-proc"]) > 0, out  # the environments were readable

    # Pause: the token dies. Resume: the next turn's commands get a new one.
    assert (await api.http.post(f"/v1/sessions/{sid}/pause", headers=api.auth(key))).is_success
    assert await _proxy_status(api, sid, token) == 401
    assert (await api.http.post(f"/v1/sessions/{sid}/resume", headers=api.auth(key))).is_success
    tool = await _run_tool_turn(api, key, sid, call_model(token))
    renewed = _lines(tool["result"])
    assert renewed["token"].startswith("atp_") and renewed["token"] != token
    assert tool["result"].count('"text_delta"') == 3, tool["result"]
    assert renewed["forged"] == "401"  # the old token, inside the sandbox too
    assert await _proxy_status(api, sid, renewed["token"]) == 200

    # Delete: every token of the session dies.
    assert (await api.http.delete(f"/v1/sessions/{sid}", headers=api.auth(key))).is_success
    assert await _proxy_status(api, sid, renewed["token"]) == 401
    assert await _proxy_status(api, other, other_token) == 200


async def test_a_token_is_refused_for_the_wrong_session_path(sandbox_api: Api) -> None:
    api = sandbox_api
    key = await api.key()
    one, two = await new_session(api, key), await new_session(api, key)
    tool = await _run_tool_turn(api, key, one, call_model("atp_nothing"))
    token = _lines(tool["result"])["token"]
    assert await _proxy_status(api, two, token) == 401
    assert await _proxy_status(api, one, token) == 200


@pytest.mark.parametrize("public_url", ["https://agents.example.com/", ""])
async def test_modal_commands_get_the_public_proxy_url(
    tmp_path: Path, fake_model: FakeAnthropic, public_url: str
) -> None:
    cloud = FakeModalCloud(tmp_path / "modal")
    settings = make_settings(
        tmp_path, fake_model.url, sandbox_provider="modal", public_url=public_url
    )
    provider = ModalSandboxProvider(settings, modal_module=FakeModal(cloud))
    async with api_for(settings, fake_model, provider=provider) as api:
        key = await api.key()
        sid = await new_session(api, key)
        command = 'echo "token=${ANTHROPIC_API_KEY:-none}"; echo "base=${ANTHROPIC_BASE_URL:-none}"'
        tool = await _run_tool_turn(api, key, sid, command, calls_model=False)
        seen = _lines(tool["result"])
        if not public_url:  # nowhere to reach the proxy at: nothing is given
            assert seen == {"token": "none", "base": "none"}
            return
        assert seen["base"] == f"https://agents.example.com/v1/model-proxy/{sid}"
        assert seen["token"].startswith("atp_")
        assert await _proxy_status(api, sid, seen["token"]) == 200
        assert (await api.http.delete(f"/v1/sessions/{sid}", headers=api.auth(key))).is_success
        assert await _proxy_status(api, sid, seen["token"]) == 401
