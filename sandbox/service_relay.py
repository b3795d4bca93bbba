"""Run a service in a sandbox and relay its port over Unix sockets (stdlib only).

Copied into the sandbox and run there with the sandbox's ``python3``::

    python3 service_relay.py --dir D --expose NAME.sock=PORT --ingress PORT=HOST.sock -- ARGV...

- ``--expose S=P``: listen on the Unix socket ``D/S``; each connection is
  piped to ``127.0.0.1:P`` inside the sandbox (the service's port). The server
  connects to that socket from outside: no network needed between the two.
- ``--ingress P=S``: listen on ``127.0.0.1:P`` inside the sandbox; each
  connection is piped to the Unix socket ``D/S``, on which the server listens
  (how the service reaches the server, e.g. the model proxy).
- ``ARGV`` is the service itself; the relay exits with its exit code, and kills
  it when told to stop (SIGTERM, SIGINT).

Socket names are relative to ``D`` (the process changes into it), so a long
workspace path never meets the 108-byte limit of a Unix socket path.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys

_CHUNK = 64 * 1024


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy bytes from ``reader`` to ``writer`` until EOF, then half-close."""
    try:
        while True:
            data = await reader.read(_CHUNK)
            if not data:
                break
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass


async def splice(
    a: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    b: tuple[asyncio.StreamReader, asyncio.StreamWriter],
) -> None:
    """Pipe two connections into each other until both directions end."""
    try:
        await asyncio.gather(pipe(a[0], b[1]), pipe(b[0], a[1]))
    finally:
        for _, writer in (a, b):
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


async def expose(socket_name: str, port: int) -> asyncio.AbstractServer:
    """Unix socket ``socket_name`` -> ``127.0.0.1:port``."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            writer.close()
            return
        await splice((reader, writer), upstream)

    _unlink(socket_name)
    return await asyncio.start_unix_server(handle, socket_name)


async def ingress(port: int, socket_name: str) -> asyncio.AbstractServer:
    """``127.0.0.1:port`` -> Unix socket ``socket_name``."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream = await asyncio.open_unix_connection(socket_name)
        except OSError:
            writer.close()
            return
        await splice((reader, writer), upstream)

    return await asyncio.start_server(handle, "127.0.0.1", port)


def _pair(text: str) -> tuple[str, str]:
    left, sep, right = text.partition("=")
    if not sep or not left or not right:
        raise argparse.ArgumentTypeError(f"expected A=B, got {text!r}")
    return left, right


async def main_async(args: argparse.Namespace) -> int:
    home = os.getcwd()  # the service runs where the relay was started (the workspace)
    os.chdir(args.dir)
    servers = [await expose(name, int(port)) for name, port in args.expose]
    servers += [await ingress(int(port), name) for port, name in args.ingress]
    child = await asyncio.create_subprocess_exec(
        *args.argv, stdin=asyncio.subprocess.DEVNULL, cwd=home
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: child.returncode is None and child.terminate())
    code = await child.wait()
    for server in servers:
        server.close()
    for name, _ in args.expose:
        _unlink(name)
    return code if code >= 0 else 128 - code


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", required=True)
    parser.add_argument("--expose", type=_pair, action="append", default=[])
    parser.add_argument("--ingress", type=_pair, action="append", default=[])
    parser.add_argument("argv", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.argv[:1] == ["--"]:
        args.argv = args.argv[1:]
    if not args.argv:
        parser.error("the service's command line is missing (after --)")
    sys.exit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
