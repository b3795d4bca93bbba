"""OpenCode as a session engine: ``opencode serve`` inside the sandbox.

- ``binary``: the pinned version and where the ``opencode`` program is found.
- ``config``: the service spec (argv, environment, OpenCode's config pointing
  at the model proxy with a per-session token; never the Anthropic key).
- ``client``: OpenCode's HTTP API (sessions, prompt, abort, the event stream).
- ``events``: OpenCode's events mapped onto the turn observer's callbacks.
- ``engine``: ``OpenCodeEngine``, the same ``run_turn`` as the built-in loop.
"""

from backend.agent.opencode.binary import OPENCODE_VERSION, OpenCodeMissing, find_opencode
from backend.agent.opencode.engine import OpenCodeEngine

__all__ = ["OPENCODE_VERSION", "OpenCodeEngine", "OpenCodeMissing", "find_opencode"]
