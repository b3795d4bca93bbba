"""schemathesis against the server's own OpenAPI document: generated (valid and
invalid) requests to every JSON route must never cause a 500, and every answer
must match what the document promises (status, content type, schema)."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

from backend.settings import RateLimit
from tests.backend.api.conftest import api_for, make_settings

ST = Path(sys.executable).parent / "st"
GENEROUS = RateLimit(1_000_000, 60)


REVOKE = "DELETE /v1/keys/{key_id}"


async def fuzz(api_url: str, key: str, *filters: str) -> str:
    """Run schemathesis on the operations ``filters`` select; its output, once it passed."""
    # The server runs in this event loop: the fuzzer must run beside it, not block it.
    process = await asyncio.create_subprocess_exec(
        str(ST),
        "run",
        f"{api_url}/openapi.json",
        "--header",
        f"Authorization: Bearer {key}",
        "--checks",
        "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        "--max-examples",
        "15",
        "--seed",
        "1",
        # Streams (a turn, the event follower) never end by themselves.
        "--exclude-path-regex",
        r"/(messages|events)$",
        *filters,
        "--no-color",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 240)
    text = output.decode()
    assert process.returncode == 0, text[-6000:]
    counts = re.search(r"(\d+) generated, (\d+) passed\s*$", text, re.MULTILINE)
    assert counts and counts[1] == counts[2] and int(counts[1]) > 0, text[-3000:]
    # Every operation must have been reached with a valid key, not only refused.
    assert "Authentication failed" not in text, text[-3000:]
    return text


async def test_generated_requests_never_break_the_contract(tmp_path, fake_model) -> None:
    settings = make_settings(
        tmp_path,
        fake_model.url,
        rate_limit_default=GENEROUS,
        rate_limit_create_session=GENEROUS,
        rate_limit_files=GENEROUS,
        rate_limit_send_message=GENEROUS,
        max_active_sessions=1_000_000,
    )
    async with api_for(settings, fake_model) as api:
        # Revoking a key can hit the fuzzer's own (the stateful phase links
        # ``GET /v1/keys`` to it), after which everything else answers 401: that
        # operation runs last, on its own.
        await fuzz(api.url, await api.key(), "--exclude-name", REVOKE)
        await fuzz(api.url, await api.key(), "--include-name", REVOKE)
