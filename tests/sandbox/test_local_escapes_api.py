"""The escapes once more end to end: a real server with serve's sandbox settings
(bubblewrap, no network, low bounds), the fake model asking the shell tool to
run them, the tool results read back from the session's events."""

from __future__ import annotations

from pathlib import Path

from backend.settings import Settings
from tests.backend.api.conftest import api_for, make_settings
from tests.backend.api.test_sessions import collect, new_session
from tests.fakes.fake_anthropic import FakeAnthropic, reply
from tests.sandbox.test_local import require_bwrap

ESCAPES = {
    "shadow": "cat /etc/shadow",
    "uid": "id -u",
    "config": "cat {config}/config.json; cat {data}/test.db | head -c 100",
    "server": "python3 -c 'import socket; s=socket.socket(); s.settimeout(2); "
    'print("reached" if s.connect_ex(("127.0.0.1", {port})) == 0 else "refused")\'',
    "fork bomb": "bomb() {{ bomb | bomb & }}; bomb; sleep 2",
}


def serve_settings(tmp_path: Path, model_url: str) -> Settings:
    return make_settings(
        tmp_path,
        model_url,
        unsafe_local_sandbox=False,
        local_sandbox_network=False,  # serve's default
        local_sandbox_max_processes=64,
        local_sandbox_memory_mib=256,
        local_sandbox_cpu_seconds=2,
    )


async def test_escapes_through_the_api_fail_and_the_server_answers(tmp_path: Path) -> None:
    require_bwrap()
    with FakeAnthropic() as model:
        settings = serve_settings(tmp_path, model.url)
        settings.config_dir.mkdir(parents=True)
        (settings.config_dir / "config.json").write_text('{"key": "sk-ant-config-secret"}')
        async with api_for(settings, model) as api:
            key = await api.key()
            sid = await new_session(api, key)
            port = int(api.url.rsplit(":", 1)[1])
            commands = {
                name: command.format(config=settings.config_dir, data=settings.data_dir, port=port)
                for name, command in ESCAPES.items()
            }
            model.enqueue(
                reply().text("Trying.").tool_use("shell", {"command": commands["shadow"]}),
                reply().tool_use("shell", {"command": commands["uid"]}),
                reply().tool_use("shell", {"command": commands["config"]}),
                reply().tool_use("shell", {"command": commands["server"]}),
                reply().tool_use("shell", {"command": commands["fork bomb"], "timeout": 8}),
                reply().text("Done."),
            )
            events = await collect(
                api, "POST", f"/v1/sessions/{sid}/messages", key, json={"content": "escape"}
            )
            results = [
                e["data"]
                for e in events
                if e["type"] == "message.tool" and e["data"]["status"] == "result"
            ]
            assert len(results) == 5, events
            text = [r["result"] for r in results]
            assert "No such file or directory" in text[0] and "root:" not in text[0]
            uid = text[1].split("\n")[0]
            assert uid.isdigit() and uid != "0", results[1]
            assert "sk-ant-config-secret" not in text[2] and "SQLite" not in text[2]
            assert "No such file or directory" in text[2]
            assert text[3].startswith("refused"), results[3]
            assert events[-1]["type"] == "session.idle"
            # Still answering: health, and the same session runs the next command.
            assert (await api.http.get("/health")).status_code == 200
            model.enqueue(reply().tool_use("shell", {"command": "echo alive"}), reply().text("ok"))
            events = await collect(
                api, "POST", f"/v1/sessions/{sid}/messages", key, json={"content": "again"}
            )
            last = [e["data"] for e in events if e["type"] == "message.tool"][-1]
            assert last["result"].startswith("alive"), last
