"""Prompts sent from this machine, kept between runs so that ↑ recalls them.

One JSON string per line in ``<data dir>/prompt-history.jsonl``, readable by
its owner only (prompts can hold anything). The file is the OS user's, shared
by every backend the app talks to, like a shell's history. A file that cannot
be read or written costs the recall, never the app.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

__all__ = ["HISTORY_FILENAME", "PromptHistory"]

HISTORY_FILENAME = "prompt-history.jsonl"
log = logging.getLogger(__name__)


class PromptHistory:
    """The last ``size`` prompts in ``path``, oldest first."""

    def __init__(self, path: Path, *, size: int = 200) -> None:
        self.path = path
        self.size = size
        self._lines: int | None = None  # lines in the file, once known

    def load(self) -> list[str]:
        """The stored prompts, oldest first; broken lines are skipped."""
        try:
            raw = self.path.read_text(encoding="utf-8")
        except OSError:
            return []
        prompts = []
        for line in raw.splitlines():
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, str) and value.strip():
                prompts.append(value)
        self._lines = len(raw.splitlines())
        return prompts[-self.size :]

    def append(self, prompt: str) -> None:
        """Add ``prompt``; past twice ``size`` lines the file is cut back to ``size``."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as file:
                file.write(json.dumps(prompt) + "\n")
            if self._lines is None:
                self._lines = len(self.path.read_text(encoding="utf-8").splitlines())
            else:
                self._lines += 1
            if self._lines > 2 * self.size:
                self._rewrite(self.load())
        except OSError as exc:
            log.warning("prompt history not saved to %s: %s", self.path, exc)

    def _rewrite(self, prompts: list[str]) -> None:
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.writelines(json.dumps(p) + "\n" for p in prompts[-self.size :])
        os.replace(tmp, self.path)
        self._lines = min(len(prompts), self.size)
