"""A local sandbox's commands reaching one app of the server (the model proxy).

Each command of a local sandbox runs in a jail of its own: under bubblewrap
without network (``serve``'s default), its own network namespace with only a
loopback, so no port of the host and no long-running relay (a service's
namespace is not the command's) can be reached. What every command does see is
the workspace. So:

- the server serves ``host_app`` on the Unix socket ``.agent-tui/host-app.sock``
  of the workspace (owned by the sandbox's user);
- each command runs under ``sandbox/command_relay.py``, inside the same jail,
  which listens on a free ``127.0.0.1`` port of the command's own namespace,
  pipes connections to that socket, and gives the command the port through the
  ``{host_url}`` of its environment.

The relay is a stdlib script started with ``python3 -I -S`` (a few
milliseconds); the socket leads to ``host_app`` only, which checks its own
credentials (the proxy token).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sandbox.local_service import bind_unix, prepare_service_dir, relay_python, serve_host_app

if TYPE_CHECKING:
    from sandbox.local import LocalSandbox

__all__ = ["CommandAccess"]

_SOCKET = "host-app.sock"
_RELAY = Path(__file__).with_name("command_relay.py")


class CommandAccess:
    """The extra environment of a local sandbox's commands, and the app they reach."""

    def __init__(
        self,
        env: dict[str, str],
        *,
        directory: Path | None = None,
        server: Any = None,
        task: asyncio.Task[None] | None = None,
    ) -> None:
        self._env = env
        self._directory = directory
        self._server = server
        self._task = task
        self._python, python_paths = relay_python()
        self._relay = os.path.realpath(_RELAY)
        self._read_only = [*python_paths, self._relay]

    @classmethod
    async def start(
        cls, sandbox: LocalSandbox, env: dict[str, str], host_app: Any
    ) -> CommandAccess:
        """Serve ``host_app`` on the workspace's socket (when given) and remember ``env``."""
        if host_app is None:
            return cls(dict(env))
        user = sandbox.user
        owner = (user.uid, user.gid) if user.switch else None

        def prepare() -> tuple[Path, Any]:
            directory = prepare_service_dir(sandbox.workspace, owner)
            return directory, bind_unix(directory, _SOCKET, owner)

        directory, sock = await asyncio.to_thread(prepare)
        server, task = await serve_host_app(host_app, sock)
        return cls(dict(env), directory=directory, server=server, task=task)

    def env(self, base: dict[str, str]) -> dict[str, str]:
        """``base`` with the extra variables (``{host_url}`` left for the relay)."""
        extra = {
            k: v.replace("{host_url}", "http://127.0.0.1:{port}") for k, v in self._env.items()
        }
        return {**base, **extra}

    def wrap(self, argv: list[str]) -> tuple[list[str], list[str]]:
        """(``argv`` run under the relay, host paths the relay needs read-only)."""
        if self._directory is None:
            return argv, []
        names = [k for k, v in self._env.items() if "{host_url}" in v]
        relay = [self._python, "-I", "-S", self._relay, str(self._directory), _SOCKET]
        return [*relay, *names, "--", *argv], self._read_only

    async def stop(self) -> None:
        """Stop serving the app (the sandbox stops). Idempotent."""
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(self._task, 5)
        self._server = self._task = None
