"""One block of assistant text, streamed with Textual's MarkdownStream."""

from __future__ import annotations

import time

from textual.timer import Timer
from textual.widgets import Markdown
from textual.widgets.markdown import MarkdownStream

# Fragments are handed to the MarkdownStream at most this often. Each hand-over
# costs the screen a layout pass, and on a busy event loop (the embedded backend
# shares it) ten passes a second look smooth without starving the stream.
FLUSH_INTERVAL = 0.1


class AssistantMessage(Markdown):
    """Assistant markdown that grows fragment by fragment.

    Fragments go through ``Markdown.get_stream``, which appends only the new
    text (the widget re-parses from its last block, never the whole message).
    On top of the stream's own batching, fragments are gathered for up to
    ``FLUSH_INTERVAL`` so a burst of tokens costs one append, not hundreds.
    """

    DEFAULT_CSS = """
    AssistantMessage {
        margin: 0 1 0 1;
        padding: 0 1;
        background: transparent;
    }
    """

    def __init__(self, markdown: str = "", *, message_id: str | None = None) -> None:
        super().__init__(markdown, classes="assistant")
        self.message_id = message_id
        self._stream: MarkdownStream | None = None
        self._streamed: list[str] = []
        self._pending: list[str] = []
        self._flush_timer: Timer | None = None
        self._last_flush = 0.0

    @property
    def streaming(self) -> bool:
        """True between the first fragment and ``finish``."""
        return self._stream is not None or bool(self._pending)

    @property
    def streamed_text(self) -> str:
        """Everything written so far, shown or still pending."""
        return "".join(self._streamed)

    async def write(self, fragment: str) -> None:
        """Append a fragment of markdown (shown within ``FLUSH_INTERVAL``)."""
        if not fragment:
            return
        self._streamed.append(fragment)
        self._pending.append(fragment)
        if self._flush_timer is not None:
            return
        wait = self._last_flush + FLUSH_INTERVAL - time.monotonic()
        if wait <= 0:
            await self._flush()
        else:
            self._flush_timer = self.set_timer(wait, self._flush)

    async def _flush(self) -> None:
        self._flush_timer = None
        if not self._pending:
            return
        text = "".join(self._pending)
        self._pending.clear()
        self._last_flush = time.monotonic()
        if self._stream is None:
            self._stream = Markdown.get_stream(self)
        await self._stream.write(text)

    async def finish(self, full_text: str | None = None) -> None:
        """Flush and stop the stream; if ``full_text`` differs from what streamed, show it instead.

        The closing event carries the block's whole text: a follower that joined
        mid-block (or missed fragments) is healed here.
        """
        if self._flush_timer is not None:
            self._flush_timer.stop()
        await self._flush()
        # Taken before awaiting, so a second finish() does not stop the stream twice.
        stream, self._stream = self._stream, None
        if stream is not None:
            await stream.stop()
        if full_text is not None and full_text != self.streamed_text:
            self._streamed = [full_text]
            await self.update(full_text)
