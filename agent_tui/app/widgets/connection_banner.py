"""The banner shown while the connection to the backend is lost."""

from __future__ import annotations

from textual.widgets import Static


class ConnectionBanner(Static):
    """A full-width warning, hidden until ``show_message`` is called."""

    DEFAULT_CSS = """
    ConnectionBanner {
        display: none;
        height: auto;
        width: 1fr;
        padding: 0 1;
        background: $error;
        color: $text;
        text-style: bold;
        &.-visible { display: block; }
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", markup=False, id=id)

    def show_message(self, text: str) -> None:
        """Show the banner with ``text``."""
        self.update(text)
        self.add_class("-visible")

    def hide(self) -> None:
        """Hide the banner."""
        self.remove_class("-visible")

    @property
    def shown(self) -> bool:
        """True while the banner is shown."""
        return self.has_class("-visible")
