"""The local sandbox's network switch: off, commands cannot reach the host's services."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sandbox.local import LocalSandboxProvider, bwrap_available
from tests.conftest import require


@pytest.fixture
async def listener() -> int:
    """A TCP port on the host's loopback that accepts connections."""
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield port
    server.close()


PROBE = (
    'python3 -c "import socket,sys; s=socket.socket(); s.settimeout(2); '
    "sys.exit(0 if s.connect_ex(('127.0.0.1', {port})) == 0 else 3)\""
)


@pytest.mark.parametrize("network", [True, False])
async def test_host_network_only_when_allowed(tmp_path: Path, listener: int, network: bool) -> None:
    require(bwrap_available(), "bubblewrap (bwrap) is not usable here")
    provider = LocalSandboxProvider(tmp_path / "sandboxes", isolation="bwrap", network=network)
    try:
        sandbox = await provider.create("0c5e7a52-3f41-4bc8-9d0a-1f2e3d4c5b6a")
        result = await sandbox.exec(PROBE.format(port=listener), timeout=20)
        assert result.exit_code == (0 if network else 3), result
    finally:
        await provider.close()
