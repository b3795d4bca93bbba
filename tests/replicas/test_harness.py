"""The replica harness itself: separate processes, one database, restart after SIGKILL."""

from __future__ import annotations

import signal

import httpx

from tests.replicas.conftest import ReplicaFactory


async def test_replicas_share_one_database_and_survive_a_kill(
    start_replicas: ReplicaFactory,
) -> None:
    replicas = await start_replicas(2)
    assert len({r.pid for r in replicas.replicas}) == 2
    async with httpx.AsyncClient(timeout=30) as http:
        created = await http.post(
            f"{replicas.urls[0]}/v1/keys", headers=replicas.auth(), json={"name": "made-on-0"}
        )
        assert created.status_code == 201, created.text
        # The key made through replica 0 works on replica 1: one database.
        other = await http.get(
            f"{replicas.urls[1]}/v1/keys", headers=replicas.auth(created.json()["key"])
        )
        assert other.status_code == 200, other.text

        old_pid = replicas[0].pid
        assert await replicas.kill(0) == -signal.SIGKILL
        assert not replicas[0].alive
        await replicas.restart(0)
        assert replicas[0].alive and replicas[0].pid != old_pid
        again = await http.get(f"{replicas.urls[0]}/v1/keys", headers=replicas.auth())
        assert again.status_code == 200
        assert "made-on-0" in {k["name"] for k in again.json()["keys"]}
    assert "start #2" in replicas.logs(0)
