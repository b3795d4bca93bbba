"""A real server whose sessions run OpenCode (the real binary from npm) against
the fake model through the model proxy."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from backend.agent.opencode import OpenCodeMissing, find_opencode
from tests.backend.api.conftest import Api, api_for, make_settings
from tests.backend.api.conftest import fake_model as fake_model  # a fixture, re-exported
from tests.conftest import require
from tests.fakes.fake_anthropic import FakeAnthropic

# The server's Anthropic key in these tests: it must appear nowhere in a sandbox.
SECRET_KEY = "sk-ant-api03-SECRET-never-in-a-sandbox-0123456789"


def opencode_installed() -> bool:
    try:
        find_opencode()
    except OpenCodeMissing:
        return False
    return True


@pytest.fixture
def need_opencode() -> None:
    require(opencode_installed(), "opencode is not installed (make opencode)")


@pytest.fixture
async def oc_api(
    tmp_path: Path, fake_model: FakeAnthropic, need_opencode: None
) -> AsyncIterator[Api]:
    """The server with ``AGENT_ENGINE=opencode`` and the fake model as the upstream."""
    fake_model.api_key = SECRET_KEY
    settings = make_settings(
        tmp_path,
        fake_model.url,
        anthropic_api_key=SECRET_KEY,
        agent_engine="opencode",
        local_sandbox_network=False,
        opencode_start_timeout_seconds=120.0,
        # An OpenCode turn can outlast the 15 s keepalive on a loaded machine; the
        # tests' SSE reader expects events only.
        keepalive_seconds=600.0,
    )
    async with api_for(settings, fake_model) as running:
        yield running
