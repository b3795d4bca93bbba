"""The pinned OpenCode version and where its program is found on this host.

``OPENCODE_VERSION`` is the one place the version is written: the Makefile and
``.ci/run`` read it from here to install ``opencode-ai`` from npm into
``.venv/opencode`` when it is missing.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from backend.errors import SandboxError

__all__ = ["OPENCODE_VERSION", "OpenCodeMissing", "find_opencode", "project_opencode"]

OPENCODE_VERSION = "1.18.33"


class OpenCodeMissing(SandboxError):
    """The ``opencode`` program is not installed where the local sandbox can run it."""

    default_message = (
        f"OpenCode is not installed: run `make opencode` (npm install opencode-ai@{OPENCODE_VERSION} "
        "into .venv/opencode), put `opencode` on PATH, or set OPENCODE_BIN"
    )


def project_opencode() -> Path:
    """Where ``make opencode`` installs it: ``<virtualenv>/opencode/node_modules/.bin/opencode``."""
    return Path(sys.prefix) / "opencode" / "node_modules" / ".bin" / "opencode"


def find_opencode(configured: str = "") -> str:
    """The real path of the ``opencode`` program, or raise ``OpenCodeMissing``.

    Looks at ``configured`` (``OPENCODE_BIN``), the project's own install, then PATH.
    """
    candidates = [configured] if configured else [str(project_opencode()), shutil.which("opencode")]
    for candidate in candidates:
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return os.path.realpath(candidate)
    if configured:
        raise OpenCodeMissing(f"OPENCODE_BIN={configured} is not an executable file")
    raise OpenCodeMissing()
