"""The line under the prompt that lists completions (``/commands``, ``@paths``)."""

from __future__ import annotations

from textual.widgets import Static


class CompletionHint(Static):
    """Shows candidates while the user types ``/`` or ``@``; Tab takes the first."""

    DEFAULT_CSS = """
    CompletionHint { height: 1; color: $text-muted; padding: 0 1; display: none; }
    CompletionHint.-active { display: block; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id, markup=False)
        self.candidates: list[str] = []

    def show(self, candidates: list[str], note: str = "") -> None:
        self.candidates = candidates
        text = "  ".join(candidates[:8]) + ("  …" if len(candidates) > 8 else "")
        self.update(f"Tab: {text}{note}" if candidates else note)
        self.set_class(bool(candidates or note), "-active")
