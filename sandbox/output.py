"""``OutputCapture``: the head and tail of one command output stream, within a byte limit.

Shared by the sandbox providers, so every command's output is cut the same way.
"""

from __future__ import annotations

import codecs

__all__ = ["OutputCapture"]


class OutputCapture:
    """The first and last bytes of one stream, ``limit`` bytes in all."""

    def __init__(self, limit: int) -> None:
        self.limit = max(0, limit)
        self.total = 0
        self._head_limit = self.limit - self.limit // 2
        self._tail_limit = self.limit // 2
        self._head = bytearray()
        self._tail = bytearray()

    def add(self, data: bytes) -> None:
        """Count ``data`` and keep what fits in the head, else the latest bytes."""
        self.total += len(data)
        room = self._head_limit - len(self._head)
        if room > 0:
            self._head += data[:room]
            data = data[room:]
        if data and self._tail_limit:
            self._tail += data
            excess = len(self._tail) - self._tail_limit
            if excess > 0:
                del self._tail[:excess]

    @property
    def truncated(self) -> bool:
        """More bytes came than the limit: some were dropped."""
        return self.total > self.limit

    def text(self) -> str:
        """The kept output, with a note where bytes were dropped."""
        if not self.truncated:
            return (bytes(self._head) + bytes(self._tail)).decode("utf-8", "replace")
        # Cut on character boundaries rather than showing replacement characters
        # where the cut split a UTF-8 sequence.
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        head = decoder.decode(bytes(self._head), final=False)
        kept_head = len(self._head) - len(decoder.getstate()[0])
        skip = 0
        while skip < min(3, len(self._tail)) and self._tail[skip] & 0xC0 == 0x80:
            skip += 1
        tail = bytes(self._tail[skip:]).decode("utf-8", "replace")
        dropped = self.total - kept_head - (len(self._tail) - skip)
        return f"{head}\n[... {dropped} bytes truncated ...]\n{tail}"
