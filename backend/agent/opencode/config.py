"""What ``opencode serve`` is started with inside a sandbox.

OpenCode gets one provider, ``agent-tui``, speaking the Anthropic API at this
server's model proxy, with a per-session proxy token as its API key: the
Anthropic key never enters the sandbox. Its config comes through
``OPENCODE_CONFIG_CONTENT`` (no file holds the token), its data (the OpenCode
session, so a resumed sandbox continues it) lives in the workspace's
``.agent-tui/opencode``, and everything that would reach the internet (model
catalogue, updates, sharing, plugins, LSP downloads) is off.
"""

from __future__ import annotations

import json
from typing import Any

from sandbox.base import ServiceSpec

__all__ = [
    "ADAPTIVE_THINKING_VARIANT",
    "ASKED_PERMISSIONS",
    "DATA_DIR",
    "OFFLINE_ENV",
    "PROVIDER_ID",
    "SERVICE_NAME",
    "THINKING_VARIANT",
    "opencode_config",
    "service_spec",
]

SERVICE_NAME = "opencode"
PROVIDER_ID = "agent-tui"
DATA_DIR = ".agent-tui/opencode"

OFFLINE_ENV = {
    "OPENCODE_DISABLE_MODELS_FETCH": "1",
    "OPENCODE_DISABLE_AUTOUPDATE": "1",
    "OPENCODE_DISABLE_DEFAULT_PLUGINS": "1",
    "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
    "OPENCODE_DISABLE_CLAUDE_CODE": "1",
    "OPENCODE_DISABLE_SHARE": "1",
    "OPENCODE_DISABLE_EMBEDDED_WEB_UI": "1",
    "OPENCODE_PURE": "1",
}


# OpenCode asks before these permissions; the engine puts each request to the
# session's permission gate (``backend/sessions/permissions.py``), which decides
# by the session's mode. Nothing else mutates the workspace ("edit" covers
# OpenCode's edit, write and apply_patch tools).
ASKED_PERMISSIONS = ("bash", "edit")
# The model variant a prompt names when the session asks for extended thinking.
THINKING_VARIANT = "agent-tui-thinking"
ADAPTIVE_THINKING_VARIANT = "agent-tui-thinking-adaptive"


def opencode_config(
    *, proxy_url: str, token: str, model: str, max_tokens: int, thinking_budget: int = 4096
) -> dict[str, Any]:
    """OpenCode's config: the proxy as the only provider; bash and edits asked
    (the engine answers by the session's permission mode), the rest allowed."""
    return {
        "$schema": "https://opencode.ai/config.json",
        "autoupdate": False,
        "share": "disabled",
        "model": f"{PROVIDER_ID}/{model}",
        "small_model": f"{PROVIDER_ID}/{model}",
        "enabled_providers": [PROVIDER_ID],
        "permission": {"webfetch": "allow", **dict.fromkeys(ASKED_PERMISSIONS, "ask")},
        # A denied call is a tool error the model sees and the turn goes on (as with
        # the built-in engine), also for the calls OpenCode rejects along with it.
        "experimental": {"continue_loop_on_deny": True},
        "provider": {
            PROVIDER_ID: {
                "npm": "@ai-sdk/anthropic",
                "name": "agent-tui model proxy",
                "options": {"baseURL": proxy_url, "apiKey": token},
                "models": {
                    model: {
                        "name": model,
                        "tool_call": True,
                        "limit": {"context": 200_000, "output": max_tokens},
                        # Chosen per prompt (``variant``) when the session has thinking on.
                        "variants": {
                            THINKING_VARIANT: {
                                "thinking": {"type": "enabled", "budgetTokens": thinking_budget}
                            },
                            ADAPTIVE_THINKING_VARIANT: {"thinking": {"type": "adaptive"}},
                        },
                    }
                },
            }
        },
    }


def service_spec(
    *,
    binary: str,
    workspace_home: str,
    session_id: str,
    token: str,
    model: str,
    max_tokens: int,
    host_app: Any,
    thinking_budget: int = 4096,
    proxy_base: str = "{host_url}",
    port: int = 0,
) -> ServiceSpec:
    """The ``ServiceSpec`` of ``opencode serve`` for one session.

    ``proxy_base`` is how the sandbox reaches the model proxy: ``{host_url}``
    (the provider relays ``host_app``) or this server's public URL (Modal).
    ``workspace_home`` is the workspace's absolute path inside the sandbox.
    """
    proxy_url = f"{proxy_base}/v1/model-proxy/{session_id}/v1"
    config = opencode_config(
        proxy_url=proxy_url,
        token=token,
        model=model,
        max_tokens=max_tokens,
        thinking_budget=thinking_budget,
    )
    data = f"{workspace_home}/{DATA_DIR}"
    env = {
        **OFFLINE_ENV,
        "HOME": f"{data}/home",
        "XDG_CONFIG_HOME": f"{data}/config",
        "XDG_DATA_HOME": f"{data}/data",
        "XDG_STATE_HOME": f"{data}/state",
        "XDG_CACHE_HOME": f"{data}/cache",
        "OPENCODE_CONFIG_CONTENT": json.dumps(config),
    }
    argv = (
        binary,
        "serve",
        "--pure",
        "--hostname",
        "127.0.0.1",
        "--port",
        "{port}" if not port else str(port),
    )
    return ServiceSpec(
        name=SERVICE_NAME,
        argv=argv,
        port=port,
        env=env,
        host_app=host_app,
        binaries=(binary,),
        password_env="OPENCODE_SERVER_PASSWORD",
        shell_bounds=True,
    )
