"""This process's replica id: in every log line and in the ``X-Replica-ID`` header.

With several replicas of ``agent-tui serve`` behind one address, the id says
which process answered a request or wrote a log line. It is
``AGENT_TUI_REPLICA_ID`` when set, else generated once per process from the host
name, the pid and a short random suffix (so a restarted replica, or one whose
pid was reused, gets a new id).
"""

from __future__ import annotations

import os
import re
import secrets
import socket

__all__ = ["REPLICA_ID_PATTERN", "configure_replica_id", "generate_replica_id", "replica_id"]

# What an id may look like: it goes into a header and log lines verbatim.
REPLICA_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

_configured: str = ""
_generated: tuple[int, str] | None = None  # (pid it was made in, id)


def generate_replica_id() -> str:
    """A new id: ``<host>-<pid>-<6 hex digits>``, host name cut to 64 safe characters."""
    host = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname())[:64] or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"


def configure_replica_id(configured: str = "") -> str:
    """Fix this process's id to ``configured`` (``""``: the generated one); return the id.

    Called once at start-up with ``Settings.replica_id``.
    """
    global _configured
    if configured and not REPLICA_ID_PATTERN.match(configured):
        raise ValueError(f"replica id must match {REPLICA_ID_PATTERN.pattern}; got {configured!r}")
    _configured = configured
    return replica_id()


def replica_id() -> str:
    """This process's replica id (generated on first use unless one was configured).

    A process forked after the id was generated gets its own on first use.
    """
    global _generated
    if _configured:
        return _configured
    pid = os.getpid()
    if _generated is None or _generated[0] != pid:
        _generated = (pid, generate_replica_id())
    return _generated[1]
