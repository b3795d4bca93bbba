"""The API keys screen: list, create and revoke the keys of the current user."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from rich.text import Text
from textual import work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from agent_tui.app.api_errors import describe, error_code
from agent_tui.app.humanize import ago, short_date
from agent_tui.app.screens.confirm import ConfirmScreen
from agent_tui.app.screens.key_create import KeyCreateScreen
from agent_tui.app.screens.key_created import KeyCreatedScreen

if TYPE_CHECKING:
    from agent_tui.app.app import AgentApp
    from backend.schemas import KeyOut

NEEDS_ADMIN = (
    "This API key has no admin scope: it can list keys, but creating and revoking "
    "them needs a key with the admin scope."
)


def key_display(key: KeyOut) -> str:
    """``aa_live_AbCd…wxyz``: enough to recognise a key, never the key."""
    return f"{key.prefix}…{key.last4}"


class KeysScreen(Screen[None]):
    """Keys of the caller's user in a table; N creates, R revokes (admin scope only)."""

    CSS_PATH = "keys.tcss"
    SUB_TITLE = "API keys"
    AUTO_FOCUS = "#key-table"
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("n", "create_key", "New key"),
        Binding("r,delete", "revoke_key", "Revoke"),
        Binding("f5", "refresh", "Refresh"),
    ]

    # Below this width the table is compact: no Created and Env columns (the key's
    # prefix shows its environment), shorter statuses and scopes.
    COMPACT_BELOW = 100

    def __init__(self) -> None:
        super().__init__()
        self.keys: dict[str, KeyOut] = {}
        self.is_admin: bool | None = None  # None until known
        self._own: KeyOut | None = None
        self._compact: bool | None = None

    @property
    def agent_app(self) -> AgentApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(
            "The API keys of your user. A key is shown in full only once, when it is created; "
            "here you see its prefix and last four characters.",
            id="keys-help",
            markup=False,
        )
        yield Static("", id="keys-notice", markup=False)
        yield DataTable(id="key-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="keys-empty", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self._fit(self.app.size.width)
        self.action_refresh()

    def on_resize(self) -> None:
        self._fit(self.size.width)

    def _fit(self, width: int) -> None:
        compact = width < self.COMPACT_BELOW
        if compact == self._compact:
            return
        self._compact = compact
        table = self.query_one(DataTable)
        table.clear(columns=True)
        columns = ["Name", "Key", "Status", "Scopes", "Last used", "Expires"]
        table.add_columns(*(columns if compact else [*columns, "Created", "Env"]))
        self._fill()

    def _fill(self, select_id: str | None = None) -> None:
        table = self.query_one(DataTable)
        table.clear()
        for key in self.keys.values():
            table.add_row(*self._row(key, self._own), key=key.id)
        if select_id in self.keys:
            table.move_cursor(row=table.get_row_index(select_id))

    def action_refresh(self) -> None:
        """Reload the list."""
        self._load()

    def _own_key(self, keys: list[KeyOut]) -> KeyOut | None:
        api_key = self.agent_app.connection.api_key or ""
        return next(
            (k for k in keys if api_key.startswith(k.prefix) and api_key.endswith(k.last4)), None
        )

    @work(exclusive=True, group="keys", exit_on_error=False)
    async def _load(self, select_id: str | None = None) -> None:
        client = self.agent_app.client
        if client is None:
            return
        table = self.query_one(DataTable)
        table.loading = True
        try:
            keys = await client.list_keys()
        except Exception as exc:
            self._notice(f"Could not list keys: {describe(exc)}", error=True)
            return
        finally:
            table.loading = False
        own = self._own_key(keys)
        self.is_admin = None if own is None else "admin" in own.scopes
        self._notice(NEEDS_ADMIN if self.is_admin is False else "", error=False)
        self.keys = {k.id: k for k in keys}
        self._own = own
        self._fill(select_id)
        empty = self.query_one("#keys-empty", Static)
        empty.update("" if keys else "No keys. Press N to create one.")

    def _row(self, key: KeyOut, own: KeyOut | None) -> list[Text]:
        compact = bool(self._compact)
        this_key = own is not None and own.id == key.id
        if key.revoked_at:
            when = "" if compact else f" {short_date(key.revoked_at)}"
            status = Text(f"revoked{when}", style="red")
        elif key.expires_at and key.expires_at < _now_iso():
            status = Text("expired", style="yellow")
        elif this_key:
            # The key in use is active by definition.
            status = Text("this key" if compact else "active (this key)", style="green")
        else:
            status = Text("active", style="green")
        dim = "dim" if key.revoked_at else ""
        # Compact: admin stands for admin,sessions (every key has the sessions scope).
        scopes = (
            ("admin" if "admin" in key.scopes else "sessions") if compact else ",".join(key.scopes)
        )
        cells = [
            Text(key.name, style=dim),
            Text(key_display(key), style=dim),
            status,
            Text(scopes, style=dim),
            Text(ago(key.last_used_at) if key.last_used_at else "never", style=dim),
            Text(short_date(key.expires_at)[:10] if key.expires_at else "never", style=dim),
        ]
        if not compact:
            cells += [
                Text(short_date(key.created_at)[:10], style=dim),
                Text(key.environment, style=dim),
            ]
        return cells

    def _notice(self, text: str, *, error: bool) -> None:
        notice = self.query_one("#keys-notice", Static)
        notice.update(text)
        notice.set_class(bool(text), "-visible")
        notice.set_class(error, "-error")

    def _refuse_without_admin(self) -> bool:
        if self.is_admin is False:
            self.notify(NEEDS_ADMIN, title="Needs admin scope", severity="warning")
            return True
        return False

    def action_create_key(self) -> None:
        """Create a key (admin scope)."""
        if not self._refuse_without_admin():
            self._create()

    @work(group="dialog", exit_on_error=False)
    async def _create(self) -> None:
        client = self.agent_app.client
        request = await self.app.push_screen_wait(KeyCreateScreen())
        if request is None or client is None:
            return
        try:
            created = await client.create_key(
                request.name,
                scopes=request.scopes,
                environment=request.environment,
                expires_at=request.expires_at,
            )
        except Exception as exc:
            self._report(exc, "Could not create the key")
            return
        self._load(select_id=created.id)
        await self.app.push_screen_wait(KeyCreatedScreen(created.name, created.key, created.scopes))

    def _selected_key(self) -> KeyOut | None:
        table = self.query_one(DataTable)
        if not self.keys or table.cursor_row is None:
            return None
        row_key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        return self.keys.get(str(row_key.value))

    def action_revoke_key(self) -> None:
        """Revoke the selected key after confirmation (admin scope)."""
        if not self._refuse_without_admin():
            self._revoke()

    @work(group="dialog", exit_on_error=False)
    async def _revoke(self) -> None:
        client = self.agent_app.client
        key = self._selected_key()
        if key is None or client is None:
            self.notify("Select a key first.", severity="warning")
            return
        if key.revoked_at:
            self.notify(f"“{key.name}” is already revoked.", severity="warning")
            return
        own = self._own_key(list(self.keys.values()))
        warning = (
            " This is the key this app is using: it will stop working at once."
            if own is not None and own.id == key.id
            else ""
        )
        confirmed = await self.app.push_screen_wait(
            ConfirmScreen(
                "Revoke key?",
                f"Revoke “{key.name}” ({key_display(key)})? Programs using it are refused "
                f"from their next request. This cannot be undone.{warning}",
                confirm_label="Revoke",
            )
        )
        if not confirmed:
            return
        try:
            await client.revoke_key(key.id)
        except Exception as exc:
            self._report(exc, "Could not revoke the key")
            return
        self.notify(f"Revoked “{key.name}”.", timeout=4)
        self._load(select_id=key.id)

    def _report(self, exc: Exception, title: str) -> None:
        if error_code(exc) == "FORBIDDEN":
            self.is_admin = False
            self._notice(NEEDS_ADMIN, error=False)
            self.notify(NEEDS_ADMIN, title="Needs admin scope", severity="warning")
        else:
            self.notify(describe(exc), title=title, severity="error")

    def palette_commands(self) -> Iterator[SystemCommand]:
        """This screen's entries for the command palette."""
        yield SystemCommand(
            "Create API key", "Name, scopes, environment, expiry (N)", self.action_create_key
        )
        yield SystemCommand("Revoke API key", "Revoke the selected key (R)", self.action_revoke_key)
        yield SystemCommand("Refresh keys", "Reload the key list (F5)", self.action_refresh)
        yield SystemCommand("Back to sessions", "Close the keys screen (Esc)", self.app.pop_screen)


def _now_iso() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
