"""The outbox: messages typed while the backend cannot take them yet.

At launch the embedded backend needs a moment to start, and a remote one can
be reconnecting: a message sent then waits here, shown below the chat as
pending, and the main screen sends it once the backend is ready. Nothing typed
is lost: if the backend fails, the messages stay and the reason is shown.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

WAITING_FOR_START = "waiting for the backend to start"
WAITING_FOR_RECONNECT = "waiting for the backend to come back"


class PendingMessage(Static):
    """One message not sent yet, shown like a sent one but dimmed."""

    DEFAULT_CSS = """
    PendingMessage {
        margin: 0 1 0 1;
        padding: 0 1;
        border-left: thick $primary 40%;
        background: $primary 5%;
        color: $text-muted;
    }
    """

    def __init__(self, text: str) -> None:
        super().__init__(text, markup=False)
        self.text = text


class Outbox(Vertical):
    """Queued messages and why they wait; hidden while empty.

    ``holding`` is True while sends must wait (the backend is starting or
    reconnecting); ``add`` queues a message, ``pop`` takes the oldest one.
    """

    DEFAULT_CSS = """
    Outbox {
        height: auto;
        max-height: 12;
        display: none;
        &.-shown { display: block; }
        & > #outbox-reason { margin: 0 1 1 2; color: $warning; text-style: italic; }
        & > #outbox-reason.-error { color: $error; text-style: bold; }
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        # The app starts without a backend: hold until the main screen says it is ready.
        self.holding = True
        self.reason = WAITING_FOR_START
        self.failed = False
        # The queue itself; the widgets only show it (mounting and removing lag a frame).
        self._queue: list[PendingMessage] = []

    def compose(self) -> ComposeResult:
        yield Static("", id="outbox-reason", markup=False)

    @property
    def texts(self) -> list[str]:
        """The queued messages, oldest first."""
        return [m.text for m in self._queue]

    def hold(self, reason: str) -> None:
        """Keep messages from now on, saying what they wait for."""
        self.holding = True
        self.failed = False
        self.reason = reason
        self._refresh()

    def release(self) -> None:
        """The backend takes messages again (the caller sends what is queued)."""
        self.holding = False
        self.failed = False
        self.reason = ""
        self._refresh()

    def fail(self, reason: str) -> None:
        """The backend could not be reached: keep the messages and show why."""
        self.failed = True
        self.reason = reason
        self._refresh()

    def add(self, text: str, *, first: bool = False) -> None:
        """Queue ``text`` (at the front with ``first``: a message that came back)."""
        message = PendingMessage(text)
        if first and self._queue:
            self.mount(message, before=self._queue[0])
            self._queue.insert(0, message)
        else:
            self.mount(message, before="#outbox-reason")
            self._queue.append(message)
        self._refresh()

    def pop(self) -> str | None:
        """Take the oldest queued message out, or None."""
        if not self._queue:
            return None
        message = self._queue.pop(0)
        message.remove()
        self._refresh()
        return message.text

    def _refresh(self) -> None:
        self.set_class(bool(self._queue), "-shown")
        reason = self.query_one("#outbox-reason", Static)
        reason.set_class(self.failed, "-error")
        if self.failed:
            text = f"✘ Not sent yet: {self.reason}"
        elif self.holding:
            text = f"⧗ Pending, {self.reason}: sent as soon as it is ready."
        else:
            text = "⧗ Sending…"
        reason.update(text)
