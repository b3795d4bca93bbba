"""The tests' Upstash REST shim as a standalone server process, for benchmarks:
``REDIS_URL=... UPSTASH_TOKEN=... uvicorn bench.upstash_shim_server:app``."""

from __future__ import annotations

import os

from tests.fakes.upstash_shim import create_app

app = create_app(
    os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"), os.environ["UPSTASH_TOKEN"]
)
