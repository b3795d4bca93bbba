"""The ``agent-tui`` command.

- ``agent-tui``: the Textual app with the backend embedded in-process.
- ``agent-tui --remote URL [--api-key KEY]``: the app against a remote backend.
- ``agent-tui serve``: the backend alone, headless.
- ``agent-tui keys create|list|revoke``: manage keys directly on the configured database.
- ``agent-tui db migrate``: apply pending migrations.

Modules are imported inside the commands that need them, so that each command
starts fast and the app can take the terminal over before anything loads.
"""

from __future__ import annotations

import argparse
import os
import sys

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(replica_id)s [%(request_id)s] %(message)s"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agent-tui",
        description="Run coding-agent sessions from a terminal. Without a command: the app.",
    )
    parser.add_argument(
        "--remote", metavar="URL", help="use the backend at URL instead of the embedded one"
    )
    parser.add_argument(
        "--api-key",
        metavar="KEY",
        help="API key for --remote (default: $AGENT_TUI_API_KEY or the saved profile)",
    )
    parser.add_argument(
        "--new-session",
        action="store_true",
        help="start on a new session instead of reopening the last one "
        "(env AGENT_TUI_START_SESSION=new)",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    commands = parser.add_subparsers(dest="command")

    serve = commands.add_parser("serve", help="run the backend headless (HTTP API)")
    serve.add_argument("--host", help="bind address (default 127.0.0.1, env AGENT_TUI_HOST)")
    serve.add_argument("--port", type=int, help="port (default 8787, env AGENT_TUI_PORT)")
    serve.add_argument("--database-url", help="postgresql:// DSN or SQLite path (env DATABASE_URL)")
    serve.add_argument(
        "--sandbox-provider", choices=("local", "modal"), help="env SANDBOX_PROVIDER"
    )
    serve.add_argument(
        "--unsafe-local-sandbox",
        action="store_true",
        help="allow the local sandbox without bubblewrap isolation (commands run on the host)",
    )
    serve.add_argument(
        "--log-level", choices=("debug", "info", "warning", "error"), help="env AGENT_TUI_LOG_LEVEL"
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="run N replicas behind this port (needs a PostgreSQL DATABASE_URL and REDIS_URL)",
    )
    # Internal: a worker of --workers, serving the listening socket it inherited.
    serve.add_argument("--worker-fd", type=int, help=argparse.SUPPRESS)

    keys = commands.add_parser("keys", help="manage API keys on the configured database")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = key_commands.add_parser("create", help="create a key and print it once")
    create.add_argument("--name", required=True, help="a label to recognise the key by")
    create.add_argument(
        "--user", default="default", help="user id the key belongs to (default: default)"
    )
    create.add_argument(
        "--scope",
        action="append",
        choices=("sessions", "admin"),
        help="repeatable; sessions is always included",
    )
    create.add_argument(
        "--env",
        choices=("live", "test"),
        default="live",
        help="key prefix aa_live_ or aa_test_ (default: live); a label, same rights",
    )
    create.add_argument("--expires", metavar="ISO", help="expiry, e.g. 2027-01-31T00:00:00Z")
    create.add_argument("--json", action="store_true", help="print a JSON object")
    listing = key_commands.add_parser("list", help="list keys")
    listing.add_argument("--user", default="default", help="whose keys (default: default)")
    listing.add_argument("--json", action="store_true", help="print a JSON array")
    revoke = key_commands.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("id")

    db = commands.add_parser("db", help="database maintenance")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    db_commands.add_parser("migrate", help="apply pending migrations")
    return parser


def configure_logging(
    level: str, stream: object | None = None, filename: str | None = None
) -> None:
    """Log lines carry the request id; the secret-bearing SDK loggers stay quiet."""
    import logging

    from backend.api.middleware import RequestIdFilter

    handler: logging.Handler = (
        logging.FileHandler(filename) if filename else logging.StreamHandler(stream or sys.stderr)  # type: ignore[arg-type]
    )
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx/httpx2/anthropic debug logs can include request headers: never below INFO.
    for name in ("httpx", "httpx2", "httpcore", "anthropic", "modal", "hpack"):
        logging.getLogger(name).setLevel(max(logging.INFO, root.level))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.version:
        from agent_tui import __version__

        print(f"agent-tui {__version__}")
        return 0
    if args.command is None:
        from agent_tui.app.typeahead import keep_typeahead

        # The app. First of all: a message typed and sent while it loads must arrive.
        with keep_typeahead() as typeahead:
            return _command(args, typeahead.lines)
    return _command(args)


def _command(args: argparse.Namespace, typed_ahead: list[str] | None = None) -> int:
    import asyncio

    from backend.settings import SettingsError

    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "keys":
            return asyncio.run(_keys(args))
        if args.command == "db":
            return asyncio.run(_migrate())
        return _run_app(args, typed_ahead or [])
    except SettingsError as exc:
        print(f"agent-tui: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _run_app(args: argparse.Namespace, typed_ahead: list[str]) -> int:
    from agent_tui.app import run_app
    from backend.settings import Settings

    settings = Settings.from_env(start_session="new" if args.new_session else None)
    api_key = args.api_key or os.environ.get("AGENT_TUI_API_KEY") or None
    return run_app(
        settings=settings, remote_url=args.remote, api_key=api_key, typed_ahead=typed_ahead
    )


def _serve(args: argparse.Namespace) -> int:
    import logging

    from backend.settings import Settings

    settings = Settings.from_env(
        host=args.host,
        port=args.port,
        database_url=args.database_url,
        sandbox_provider=args.sandbox_provider,
        unsafe_local_sandbox=True if args.unsafe_local_sandbox else None,
        log_level=args.log_level,
    )
    if settings.local_sandbox_network is None:
        settings = settings.replace(local_sandbox_network=False)
    configure_logging(settings.log_level)
    if args.workers < 1:
        print("agent-tui serve: --workers must be at least 1", file=sys.stderr)
        return 2
    if args.workers > 1 and (not settings.uses_redis or settings.sqlite_path is not None):
        print(
            f"agent-tui serve: --workers {args.workers} runs {args.workers} replicas that share "
            "sessions through PostgreSQL and Redis.\n"
            "  Set DATABASE_URL=postgresql://... and REDIS_URL=redis://... "
            "(or run one process: --workers 1).",
            file=sys.stderr,
        )
        return 2
    from backend.app import check_replicas_settings

    check_replicas_settings(settings)
    if settings.sandbox_provider == "local" and not settings.unsafe_local_sandbox:
        from sandbox.local import bwrap_available

        if not bwrap_available():
            print(
                "agent-tui serve: the local sandbox needs bubblewrap (bwrap) to isolate commands, and it "
                "is not available. Remote users would run commands on this host.\n"
                "  Install it (Debian/Ubuntu: apt-get install bubblewrap), use SANDBOX_PROVIDER=modal,\n"
                "  or accept the risk with --unsafe-local-sandbox (AGENT_TUI_UNSAFE_LOCAL_SANDBOX=true).",
                file=sys.stderr,
            )
            return 2
    if not settings.anthropic_api_key:
        logging.getLogger("agent_tui").warning(
            "ANTHROPIC_API_KEY is not set: turns will fail until it is"
        )
    import uvicorn

    from backend.app import create_app
    from backend.server import ApiServer

    if args.workers > 1:
        from backend.workers import run_workers

        env = dict(os.environ)
        env.update(
            AGENT_TUI_HOST=settings.host,
            AGENT_TUI_PORT=str(settings.port),
            DATABASE_URL=settings.database_url,
            SANDBOX_PROVIDER=settings.sandbox_provider,
            AGENT_TUI_UNSAFE_LOCAL_SANDBOX=str(settings.unsafe_local_sandbox).lower(),
            AGENT_TUI_LOG_LEVEL=settings.log_level,
            LOCAL_SANDBOX_NETWORK=str(bool(settings.local_sandbox_network)).lower(),
        )
        return run_workers(
            args.workers, settings.host, settings.port, env, stop_after=settings.drain_seconds + 15
        )
    sockets = None
    if args.worker_fd is not None:
        from backend.workers import worker_socket

        sockets = [worker_socket(args.worker_fd)]
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=5,
        proxy_headers=False,
    )
    ApiServer(config, app=app).run(sockets=sockets)
    return 0


async def _open_store() -> object:
    from backend.settings import Settings
    from backend.store import open_store

    store = open_store(Settings.from_env())
    await store.migrate()
    return store


def _key_table(keys: list) -> str:  # type: ignore[type-arg]
    """``keys list``: a header row, then one aligned row per key."""
    rows = [("ID", "KEY", "USER", "SCOPES", "STATE", "NAME")]
    for k in keys:
        state = "revoked" if k.revoked_at else "active"
        rows.append((k.id, f"{k.prefix}…{k.last4}", k.user_id, ",".join(k.scopes), state, k.name))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
        + "  "
        + row[-1]
        for row in rows
    )


async def _keys(args: argparse.Namespace) -> int:
    import json
    from datetime import UTC, datetime

    from backend.auth import create_api_key
    from backend.errors import StoreUnavailable
    from backend.schemas import KeyOut

    try:
        store = await _open_store()
    except StoreUnavailable as exc:
        print(f"agent-tui keys: {exc.message}. Check DATABASE_URL.", file=sys.stderr)
        return 1
    try:
        if args.keys_command == "create":
            expires = None
            if args.expires:
                try:
                    expires = datetime.fromisoformat(args.expires.replace("Z", "+00:00"))
                except ValueError:
                    print(
                        f"agent-tui keys: --expires must be ISO 8601, got {args.expires!r}",
                        file=sys.stderr,
                    )
                    return 2
                if expires.tzinfo is None:
                    expires = expires.replace(tzinfo=UTC)
                if expires <= datetime.now(UTC):
                    print("agent-tui keys: --expires must be in the future", file=sys.stderr)
                    return 2
            scopes = sorted({"sessions", *(args.scope or [])})
            record, key = await create_api_key(
                store,  # type: ignore[arg-type]
                user_id=args.user,
                name=args.name,
                scopes=scopes,
                environment=args.env,
                expires_at=expires,
            )
            if args.json:
                print(json.dumps({**KeyOut.of(record).to_wire(), "key": key}))
            else:
                print(key)
                print(
                    f"# id {record.id}, user {record.user_id}, scopes {','.join(record.scopes)}. "
                    "Store the key now: it is not shown again.",
                    file=sys.stderr,
                )
            return 0
        if args.keys_command == "list":
            keys = await store.list_keys(args.user)  # type: ignore[attr-defined]
            if args.json:
                print(json.dumps([KeyOut.of(k).to_wire() for k in keys]))
            else:
                print(_key_table(keys))
            return 0
        if args.keys_command == "revoke":
            import uuid

            try:
                key_id = str(uuid.UUID(args.id))
            except ValueError:
                print(f"agent-tui keys: not a key id: {args.id!r}", file=sys.stderr)
                return 2
            key = await store.get_key(key_id)  # type: ignore[attr-defined]
            if key is None:
                print(f"agent-tui keys: no key {key_id}", file=sys.stderr)
                return 1
            if key.revoked_at is None:
                await store.revoke_key(key_id, datetime.now(UTC))  # type: ignore[attr-defined]
            print(f"revoked {key_id}")
            return 0
    finally:
        await store.close()  # type: ignore[attr-defined]
    return 2


async def _migrate() -> int:
    from backend.errors import StoreUnavailable
    from backend.settings import Settings
    from backend.store import open_store

    store = open_store(Settings.from_env())
    try:
        applied = await store.migrate()
    except StoreUnavailable as exc:
        print(f"agent-tui db migrate: {exc.message}. Check DATABASE_URL.", file=sys.stderr)
        return 1
    finally:
        await store.close()
    print("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
