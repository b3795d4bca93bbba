"""The model proxy: sandboxes reach the model through this server, never with its key.

An engine that runs inside a sandbox (OpenCode) is given a per-session token
(``ProxyTokens``) and this server's proxy route as its Anthropic base URL. The
proxy (``ModelProxy``) checks the token against the session named in the path,
swaps it for the real Anthropic key and forwards the request, streaming the
answer back untouched while reading its usage.
"""

from backend.model_proxy.forward import ModelProxy
from backend.model_proxy.tokens import ProxyGrant, ProxyTokens

__all__ = ["ModelProxy", "ProxyGrant", "ProxyTokens"]
