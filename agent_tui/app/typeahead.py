"""Keys typed before the app has taken over the terminal keep their meaning.

Until Textual switches the terminal to raw mode (a few tenths of a second after
launch), the terminal driver is in its ordinary "cooked" mode: it turns Enter
(``\\r``) into ``\\n`` as the key arrives and echoes it. Textual would read that
``\\n`` as Ctrl+J, which the prompt takes as "new line", so a message typed at
once and sent with Enter would sit in the prompt instead of being sent.

``keep_typeahead`` switches that translation (and the echo) off first thing,
so an Enter pressed from then on arrives as Enter. The lines already completed
with Enter before that moment are taken out of the terminal's buffer and
handed to the app as messages to send (``Typeahead.lines``). The terminal is
put back exactly as it was when the app ends.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TextIO


@dataclass
class Typeahead:
    """What was typed before the app started: ``lines`` each ended with Enter."""

    lines: list[str] = field(default_factory=list)


@contextlib.contextmanager
def keep_typeahead(stream: TextIO | None = None) -> Iterator[Typeahead]:
    """While inside: Enter arrives as Enter and typed keys are not echoed (a no-op
    when ``stream``, default stdin, is not a terminal)."""
    typeahead = Typeahead()
    try:
        import termios
    except ImportError:  # not a POSIX terminal
        yield typeahead
        return
    try:
        fd = (stream or sys.stdin).fileno()
        saved = termios.tcgetattr(fd)
    except (AttributeError, ValueError, OSError, termios.error):
        yield typeahead
        return
    changed = list(saved)
    changed[0] &= ~termios.ICRNL  # iflag: keep \r as \r
    changed[3] &= ~termios.ECHO  # lflag: the app draws what is typed
    try:
        termios.tcsetattr(fd, termios.TCSANOW, changed)
    except termios.error:
        yield typeahead
        return
    try:
        if saved[3] & termios.ICANON:
            typeahead.lines = _completed_lines(fd)
        yield typeahead
    finally:
        # Textual restores what it found (our change); this restores the original.
        with contextlib.suppress(termios.error):
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _completed_lines(fd: int) -> list[str]:
    """The lines the terminal holds, complete (in canonical mode a read returns one
    whole line, and only whole lines are readable); a partial line stays for the app."""
    data = b""
    with contextlib.suppress(OSError):
        while select.select([fd], [], [], 0)[0]:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            data += chunk
    text = data.decode("utf-8", errors="replace")
    return [line for line in text.split("\n")[:-1] if line.strip()]
