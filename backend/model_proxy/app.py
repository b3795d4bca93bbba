"""The model proxy alone, as a small ASGI app: what a local sandbox's relay reaches.

A sandbox must reach the model proxy and nothing else of this server, so the
relay into a local sandbox serves this app rather than the whole API.
"""

from __future__ import annotations

from fastapi import FastAPI

from backend.model_proxy.forward import ModelProxy

__all__ = ["proxy_app"]


def proxy_app(proxy: ModelProxy) -> FastAPI:
    """An app with only ``/v1/model-proxy/...``, answering with ``proxy``."""
    from backend.api.routes import model_proxy

    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    app.state.model_proxy = proxy
    app.include_router(model_proxy.router)
    return app
