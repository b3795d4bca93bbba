"""The model proxy across replicas: a sandbox reaches it through the load
balancer, so a token minted by one replica must work on any other (a restarted
one included), and die everywhere once the session is deleted through any."""

from __future__ import annotations

import json
import re
import signal

import httpx

from tests.fakes.fake_anthropic import FakeAnthropic, reply
from tests.replicas.conftest import ReplicaFactory
from tests.replicas.test_sessions import Client, _client

BODY = {
    "model": "claude-sonnet-5-5",
    "max_tokens": 50,
    "messages": [{"role": "user", "content": "hi"}],
}
REFUSED = "Invalid or revoked model-proxy token"


async def _proxy(
    http: httpx.AsyncClient, base: str, sid: str, token: str, *, stream: bool = False
) -> httpx.Response:
    return await http.post(
        f"{base}/v1/model-proxy/{sid}/v1/messages",
        json={**BODY, "stream": stream},
        headers={"x-api-key": token},
    )


async def _session_on_0(client: Client) -> str:
    events = await client.until("POST", "/v1/sessions", "session.ready", at=0, json={})
    assert events[-1]["type"] == "session.ready", events
    return events[0]["sessionId"]


async def _token_from_a_turn(client: Client, sid: str, model: FakeAnthropic) -> str:
    """Run a turn on replica 0 whose shell command prints its proxy token."""
    model.enqueue(
        reply().tool_use("shell", {"command": 'echo "token=$ANTHROPIC_API_KEY"'}),
        reply().text("done"),
    )
    await client.until(
        "POST", f"/v1/sessions/{sid}/messages", "session.idle", at=0, json={"content": "go"}
    )
    r = await client.request("GET", f"/v1/sessions/{sid}/messages", at=0)
    tools = [b for b in r.json()["messages"][-1]["blocks"] if b["type"] == "tool_use"]
    found = re.search(r"token=(atp_\S+)", tools[0]["result"])
    assert found is not None, tools
    return found.group(1)


async def test_a_token_minted_on_one_replica_works_on_another_until_the_delete(
    start_replicas: ReplicaFactory, replica_model: FakeAnthropic
) -> None:
    replica_model.api_key = "test-key"  # the replicas' key; the fake refuses any other
    replicas = await start_replicas(2)
    # Replica 1 is down while replica 0 mints the token: only the store can tell
    # replica 1 about it once it is back (a restarted replica, too).
    await replicas.kill(1, signal.SIGTERM)
    async with httpx.AsyncClient(timeout=60) as http:
        client = await _client(replicas, http)
        sid, other = await _session_on_0(client), await _session_on_0(client)
        token = await _token_from_a_turn(client, sid, replica_model)
        await replicas.restart(1)
        b = replicas.urls[1]

        replica_model.enqueue(reply().text("through b", chunks=["through ", "b"]))
        r = await _proxy(http, b, sid, token, stream=True)
        assert r.status_code == 200, r.text
        assert r.headers["x-replica-id"] == "replica-1"
        assert r.text.count('"text_delta"') == 2 and "through " in r.text
        assert replica_model.message_requests[-1].headers.get("x-api-key") == "test-key"
        # Another session's route: refused.
        r = await _proxy(http, b, other, token)
        assert r.status_code == 401 and json.loads(r.text)["error"]["message"] == REFUSED

        # Deleted through replica 0: refused on replica 1 at once.
        assert (await client.request("DELETE", f"/v1/sessions/{sid}", at=0)).status_code == 200
        r = await _proxy(http, b, sid, token)
        assert r.status_code == 401 and json.loads(r.text)["error"]["message"] == REFUSED
        r = await _proxy(http, replicas.urls[0], sid, token)
        assert r.status_code == 401
