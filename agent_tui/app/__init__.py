"""The Textual app: ``run_app`` is what ``agent-tui`` and ``agent-tui --remote`` call.

Nothing heavy is imported here: Textual loads in ``run_app``, httpx and the
backend only once the first screen is up.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent_tui.app.connection import BackendConnection
    from backend.settings import Settings

LOG_FILENAME = "agent-tui.log"


def log_to_file(settings: Settings) -> None:
    """Send the log to ``agent-tui.log`` in the data directory, not the terminal."""
    # The terminal belongs to the app: a log line on stderr would tear the screen.
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.FileHandler(settings.data_dir / LOG_FILENAME)
    except OSError:
        handler = logging.NullHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    for name in ("httpx", "httpcore", "anthropic", "hpack"):
        logging.getLogger(name).setLevel(max(logging.INFO, root.level))


def make_connection(
    settings: Settings, remote_url: str | None, api_key: str | None
) -> BackendConnection:
    """The ``BackendConnection`` for the command line's choice of mode."""
    from agent_tui.app.connection import EmbeddedConnection, RemoteConnection
    from agent_tui.config import ConfigError, load_config, resolve_remote

    try:
        config = load_config(settings.config_dir)
    except ConfigError:
        config = None  # the embedded backend reports the broken file on screen
    if remote_url is None:
        if config is not None:
            settings = config.apply_to(settings)
        return EmbeddedConnection(settings)
    if config is not None:
        try:
            profile = resolve_remote(config, remote_url, api_key)
            return RemoteConnection(profile.url, profile.api_key)
        except ConfigError:
            pass  # a missing key is explained on screen by RemoteConnection
    return RemoteConnection(remote_url, api_key)


def run_app(
    *,
    settings: Settings,
    remote_url: str | None,
    api_key: str | None,
    typed_ahead: list[str] | None = None,
) -> int:
    """Run the app until the user quits; return the process exit code.

    ``typed_ahead``: messages typed and sent with Enter before the app had the
    terminal (``typeahead.keep_typeahead``); they are sent like any other.
    """
    log_to_file(settings)
    connection = make_connection(settings, remote_url, api_key)
    connection.prestart()  # the embedded backend loads in its own process while Textual does
    from agent_tui.app.app import AgentApp
    from agent_tui.app.prompt_history import HISTORY_FILENAME

    app = AgentApp(
        connection,
        history_path=settings.data_dir / HISTORY_FILENAME,
        open_last_session=settings.start_session == "last",
        typed_ahead=typed_ahead,
    )
    app.run()
    return app.return_code or 0
