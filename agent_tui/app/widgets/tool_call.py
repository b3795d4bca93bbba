"""A tool call: a collapsible block with its name, arguments, live status and result."""

from __future__ import annotations

import json
from typing import Any, Literal

from textual.content import Content
from textual.widgets import Collapsible, Static

ToolStatus = Literal["calling", "done", "error"]

# Long outputs are cut for display: a 30 kB `cat` would otherwise cost many
# lines of layout in the transcript; the full text stays on the server.
MAX_RESULT_CHARS = 4000
MAX_RESULT_LINES = 60
SUMMARY_CHARS = 60


def summarize_arguments(arguments: dict[str, Any]) -> str:
    """One short line for the title: the first string argument (a command, a path), else JSON."""
    for value in arguments.values():
        if isinstance(value, str) and value.strip():
            text = value.strip().splitlines()[0]
            break
    else:
        text = json.dumps(arguments, ensure_ascii=False) if arguments else ""
    return text if len(text) <= SUMMARY_CHARS else text[: SUMMARY_CHARS - 1] + "…"


def clip_result(result: str) -> str:
    """The result cut to a displayable size, saying how much was left out."""
    result = result.rstrip("\n")
    clipped = "\n".join(result.splitlines()[:MAX_RESULT_LINES])[:MAX_RESULT_CHARS]
    left_out = len(result) - len(clipped)
    if left_out > 0:
        clipped += f"\n… {left_out:,} more characters not shown"
    return clipped


class ToolCallBlock(Collapsible):
    """A tool call in the transcript, collapsed by default.

    The title shows the status (``⋯`` running, ``✔`` done, ``✘`` error), the tool's
    name and a one-line summary of its arguments; expanding shows the full
    arguments and the result.
    """

    DEFAULT_CSS = """
    ToolCallBlock {
        margin: 0 1 1 2;
        padding: 0;
        border: none;
        border-left: tall $secondary;
        background: $surface;
        height: auto;
        &.-calling { border-left: tall $warning; }
        &.-error { border-left: tall $error; }
        &.-error CollapsibleTitle { color: $error; }
        Contents { padding: 0 1 0 2; }
        .tool-section { color: $text-muted; text-style: bold; margin-top: 1; }
        .tool-result.-error { color: $error; }
    }
    """

    def __init__(
        self,
        tool_id: str,
        name: str,
        arguments: dict[str, Any],
        *,
        finished: bool = False,
        result: str | None = None,
        is_error: bool = False,
    ) -> None:
        self.tool_id = tool_id
        self.tool_name = name
        self.arguments = arguments
        self.status: ToolStatus = ("error" if is_error else "done") if finished else "calling"
        self.result = result
        args_text = json.dumps(arguments, indent=2, ensure_ascii=False)
        children = [
            Static("arguments", classes="tool-section", markup=False),
            Static(args_text, classes="tool-args", markup=False),
        ]
        if finished:
            children += self._result_widgets(result, is_error=is_error)
        super().__init__(
            *children,
            title=self._title_for(self.status),  # type: ignore[arg-type]
            collapsed=True,
            classes=f"-{self.status}",
        )

    @staticmethod
    def _result_widgets(result: str | None, *, is_error: bool) -> list[Static]:
        return [
            Static("error" if is_error else "result", classes="tool-section", markup=False),
            Static(
                clip_result(result or "(no output)"),
                classes="tool-result -error" if is_error else "tool-result",
                markup=False,
            ),
        ]

    def _title_for(self, status: ToolStatus) -> Content:
        icon, style = {
            "calling": ("⋯", "$warning"),
            "done": ("✔", "$success"),
            "error": ("✘", "$error"),
        }[status]
        label = {"calling": "  running", "done": "", "error": "  failed"}[status]
        # Template variables are inserted as literal text, so `[` in a command is safe.
        return Content.from_markup(
            f"[bold {style}]{icon}[/] [b]$name[/b]  [dim]$summary[/dim][i {style}]{label}[/]",
            name=self.tool_name,
            summary=summarize_arguments(self.arguments),
        )

    async def set_result(self, result: str | None, *, is_error: bool) -> None:
        """Show the tool's result and mark the block done or failed."""
        self.status = "error" if is_error else "done"
        self.result = result
        self.set_class(False, "-calling")
        self.set_class(is_error, "-error")
        self.set_class(not is_error, "-done")
        self.title = self._title_for(self.status)  # type: ignore[assignment]
        contents = self.query_one(Collapsible.Contents)
        await contents.mount_all(self._result_widgets(result, is_error=is_error))
