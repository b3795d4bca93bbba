"""Command palette providers beyond each screen's own action entries."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from textual.command import DiscoveryHit, Hit, Hits, Provider

from agent_tui.app.widgets.sessions_pane import session_title

if TYPE_CHECKING:
    from agent_tui.app.screens.main import MainScreen


class SessionCommands(Provider):
    """``Open session: <title>`` for every session in the sidebar."""

    def _main_screen(self) -> MainScreen | None:
        from agent_tui.app.screens.main import MainScreen

        for screen in reversed(self.app.screen_stack):
            if isinstance(screen, MainScreen):
                return screen
        return None

    def _entries(self) -> list[tuple[str, str]]:
        main = self._main_screen()
        if main is None:
            return []
        return [
            (f"Open session: {session_title(s)}", s.id) for s in main.sessions.sessions.values()
        ]

    def _open(self, session_id: str) -> None:
        main = self._main_screen()
        if main is not None:
            if self.app.screen is not main:
                self.app.pop_screen()
            main.open_session(session_id)

    async def discover(self) -> Hits:
        for text, session_id in self._entries():
            yield DiscoveryHit(
                text, partial(self._open, session_id), help="Show its history and follow it"
            )

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for text, session_id in self._entries():
            score = matcher.match(text)
            if score > 0:
                yield Hit(
                    score,
                    matcher.highlight(text),
                    partial(self._open, session_id),
                    help="Open this session",
                )
