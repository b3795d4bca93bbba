"""The README's curl walk-through does what the README says, with the fake model it names."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from tests.backend.api.conftest import Api
from tests.backend.api.test_sessions import collect, new_session

README = Path(__file__).resolve().parents[3] / "README.md"


def walkthrough_lines() -> list[str]:
    text = README.read_text()
    section = text[text.index("### A server, step by step") : text.index("## Settings")]
    return [
        line
        for block in re.findall(r"```sh\n(.*?)```", section, re.S)
        for line in block.splitlines()
    ]


def test_the_readme_links_only_inside_the_repository() -> None:
    text = README.read_text()
    for target in re.findall(r"\]\(([^)]+)\)", text):
        if target.startswith(("http://", "https://", "#")):
            continue
        assert not target.startswith(".."), target
        assert (README.parent / target).exists(), target


async def test_the_readme_message_makes_hello_py_with_the_fake_model(api: Api) -> None:
    line = next(ln for ln in walkthrough_lines() if "/messages" in ln and " -d " in ln)
    words = shlex.split(line.split("#")[0])
    body = json.loads(words[words.index("-d") + 1])
    key = await api.key()
    sid = await new_session(api, key, title="demo")
    events = await collect(api, "POST", f"/v1/sessions/{sid}/messages", key, json=body)
    assert events[0]["type"] == "session.running" and events[-1]["type"] == "session.idle"
    [result] = [
        e for e in events if e["type"] == "message.tool" and e["data"]["status"] == "result"
    ]
    assert result["data"]["result"] == "42\n[exit code: 0]"
    assert 'the shell tool\'s result reads "42\\n[exit code: 0]"' in "\n".join(walkthrough_lines())
    r = await api.http.get(f"/v1/sessions/{sid}/files/hello.py", headers=api.auth(key))
    printed = next(ln for ln in walkthrough_lines() if "/files/hello.py" in ln)
    assert r.text.strip() == printed.split("#", 1)[1].strip()
    r = await api.http.get(f"/v1/sessions/{sid}/messages", headers=api.auth(key))
    reply = r.json()["messages"][1]
    assert [b["type"] for b in reply["blocks"]] == ["text", "tool_use", "text"]
