"""The model picker: choose the model a session uses from the next turn on."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option

from agent_tui.app.humanize import compact_count
from backend.schemas import ModelOut


def model_prompt(model: ModelOut, *, current: bool) -> Content:
    """One row: the name, its id, and what it supports."""
    features = [f"{compact_count(model.context_window)} context"]
    if model.thinking:
        features.append("thinking")
    if model.compaction:
        features.append("compaction")
    mark = "● " if current else "  "
    return Content.from_markup(
        f"{mark}[b]$name[/b]  [dim]$id · $features[/dim]",
        name=model.display_name,
        id=model.id,
        features=", ".join(features),
    )


class ModelPickerScreen(ModalScreen[str | None]):
    """Dismisses with the chosen model id, or None when cancelled (Esc)."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]
    DEFAULT_CSS = """
    ModelPickerScreen { align: center middle; }
    ModelPickerScreen > Vertical {
        width: 80%; max-width: 90; height: auto; max-height: 80%;
        border: thick $primary; background: $surface; padding: 1 2;
    }
    ModelPickerScreen OptionList { height: auto; max-height: 20; }
    """

    def __init__(self, models: list[ModelOut], *, current: str | None, note: str = "") -> None:
        super().__init__()
        self.models = models
        self.current = current
        self.note = note

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Choose the model for this session", classes="dialog-title")
            options = [
                Option(model_prompt(m, current=m.id == self.current), id=m.id) for m in self.models
            ]
            yield OptionList(*options, id="models")
            if self.note:
                yield Label(self.note, classes="dialog-note", markup=False)

    def on_mount(self) -> None:
        option_list = self.query_one(OptionList)
        ids = [m.id for m in self.models]
        if self.current in ids:
            option_list.highlighted = ids.index(self.current)
        option_list.focus()

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)
