"""schemathesis against the server's own OpenAPI document: generated (valid and
invalid) requests to every JSON route must never cause a 500, and every answer
must match what the document promises (status, content type, schema)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from backend.settings import RateLimit
from tests.backend.api.conftest import api_for, make_settings

ST = Path(sys.executable).parent / "st"
GENEROUS = RateLimit(1_000_000, 60)


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
        key = await api.key()
        # The server runs in this event loop: the fuzzer must run beside it, not block it.
        process = await asyncio.create_subprocess_exec(
            str(ST),
            "run",
            f"{api.url}/openapi.json",
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
            "--no-color",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(process.communicate(), 240)
    text = output.decode()
    assert process.returncode == 0, text[-6000:]
    assert " passed" in text and "failed" not in text.split("SUMMARY")[-1], text[-3000:]
