"""The prompt history file: what ↑ recalls across runs of the app."""

from __future__ import annotations

import stat
from pathlib import Path

from agent_tui.app.prompt_history import PromptHistory


def test_history_survives_a_new_instance_in_order_and_private(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "prompt-history.jsonl"
    first = PromptHistory(path)
    assert first.load() == []
    first.append("one")
    first.append("two\nlines")
    assert PromptHistory(path).load() == ["one", "two\nlines"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_history_is_bounded_and_skips_broken_lines(tmp_path: Path) -> None:
    path = tmp_path / "prompt-history.jsonl"
    path.write_text('"ok"\nnot json\n{"a": 1}\n')
    history = PromptHistory(path, size=3)
    assert history.load() == ["ok"]
    for i in range(10):
        history.append(f"p{i}")
    assert PromptHistory(path, size=3).load() == ["p7", "p8", "p9"]


def test_an_unwritable_history_loses_nothing_else(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    history = PromptHistory(blocker / "prompt-history.jsonl")
    history.append("kept in memory only")  # no exception: the app goes on
    assert history.load() == []
