"""The Modal app that hosts agent-tui's session sandboxes, and their image.

Deploy it once per Modal environment::

    modal deploy sandbox/sandbox.py                      # app "agent-tui-sandbox"
    MODAL_APP_NAME=my-sandboxes MODAL_ENVIRONMENT=dev modal deploy sandbox/sandbox.py

The server (``sandbox/modal_provider.py``) looks the app up by the same name
and creates one ``modal.Sandbox`` per session from ``build_image()``. Modal only
builds the images of an app's Functions on deploy (an image used only by
``Sandbox.create`` would be built by the first session, which then waits
minutes), so the image is attached to the small ``health`` function below:
deploying builds it, and Modal's image cache hands the built image to every
later ``Sandbox.create`` with the same definition.

This file is imported by ``modal deploy`` and inside the ``health`` container,
where the rest of agent-tui is not installed: it depends on ``modal`` and the
standard library only, and reads its two settings straight from the
environment for that reason.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import modal

DEFAULT_APP_NAME = "agent-tui-sandbox"
WORKDIR = "/workspace"
# Pinned so the image definition (and so Modal's cache key) does not depend on
# the Python that runs `modal deploy` or the server.
PYTHON_VERSION = "3.12"
NODE_MAJOR = "22"

APT_PACKAGES = (
    "git",
    "curl",
    "ca-certificates",
    "gnupg",
    "ripgrep",
    "procps",  # ps, pkill: agents inspect what they started
    "jq",
    "less",
    "unzip",
    "patch",
)


def _opencode_version() -> str:
    """The pinned OpenCode version, read from ``backend/agent/opencode/binary.py`` (its
    one place) as text: this module must not import the backend, and inside a Modal
    container, where the image is already built, the file is not there."""
    source = Path(__file__).resolve().parent.parent / "backend" / "agent" / "opencode" / "binary.py"
    try:
        found = re.search(r'^OPENCODE_VERSION = "([^"]+)"', source.read_text(), re.MULTILINE)
    except OSError:
        return "latest"
    return found[1] if found else "latest"


OPENCODE_VERSION = _opencode_version()


def build_image(modal_module: Any = modal) -> Any:
    """The sandbox image: Debian slim with git, curl, ripgrep, Python, Node.js and OpenCode.

    ``modal_module`` is the ``modal`` package (tests pass a fake with the same
    surface). The definition is deterministic: the server and ``modal deploy``
    must produce the same one for the deploy-time build to be reused.
    """
    return (
        modal_module.Image.debian_slim(python_version=PYTHON_VERSION)
        .apt_install(*APT_PACKAGES)
        .run_commands(
            f"curl -fsSL https://deb.nodesource.com/setup_{NODE_MAJOR}.x | bash -",
            "apt-get install -y --no-install-recommends nodejs",
            "rm -rf /var/lib/apt/lists/*",
            # engine=opencode runs `opencode serve` here (pinned like the local install).
            f"npm install -g opencode-ai@{OPENCODE_VERSION} && opencode --version",
            # Commits made by the agent need an identity; no credential helper is set,
            # so a clone token can never be cached by git.
            "git config --system user.name agent-tui",
            "git config --system user.email agent-tui@localhost",
            "git config --system init.defaultBranch main",
            "git config --system advice.detachedHead false",
            f"mkdir -p {WORKDIR} /var/lib/agent-tui",
        )
        .env({"GIT_TERMINAL_PROMPT": "0", "PAGER": "cat", "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
        .workdir(WORKDIR)
    )


app_name = os.environ.get("MODAL_APP_NAME") or DEFAULT_APP_NAME
app = modal.App(app_name)
image = build_image(modal)


@app.function(image=image, timeout=60)
def health() -> dict[str, str]:
    """Report the tool versions of the sandbox image (``modal run sandbox/sandbox.py::health``)."""
    import subprocess

    versions: dict[str, str] = {}
    for tool, flag in (
        ("git", "--version"),
        ("rg", "--version"),
        ("node", "--version"),
        ("python3", "--version"),
    ):
        done = subprocess.run([tool, flag], capture_output=True, text=True, check=False)
        versions[tool] = (
            (done.stdout or done.stderr).splitlines()[0]
            if (done.stdout or done.stderr)
            else "missing"
        )
    return versions
