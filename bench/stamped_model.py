"""A minimal Anthropic-compatible streaming endpoint for latency benchmarks.

Each text delta carries the ``time.monotonic_ns()`` at which it was written, so a
client on the same machine (CLOCK_MONOTONIC is system-wide) can compute each
event's end-to-end latency. Deltas are written as fast as the socket takes them, or ``--delay`` seconds apart.
The wire format is the real one (``event:`` lines, message_start … message_stop).

    python -m bench.stamped_model --port 8766 --deltas 2000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid

import uvicorn


def frame(name: str, data: dict) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def make_app(deltas: int, delay: float = 0.0):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        if scope["method"] != "POST" or scope["path"] != "/v1/messages":
            # No models route (the server then offers its configured list), like an
            # endpoint that only streams messages.
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b'{"type":"error"}'})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        request = json.loads(body or b"{}")
        count = deltas
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream"), (b"request-id", b"req_bench")],
            }
        )
        start = {
            "type": "message_start",
            "message": {
                "id": f"msg_{uuid.uuid4().hex[:24]}",
                "type": "message",
                "role": "assistant",
                "model": request.get("model", "bench"),
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 10, "output_tokens": 1},
            },
        }
        await send(
            {"type": "http.response.body", "body": frame("message_start", start), "more_body": True}
        )
        await send(
            {
                "type": "http.response.body",
                "more_body": True,
                "body": frame(
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": 0,
                        "content_block": {"type": "text", "text": ""},
                    },
                ),
            }
        )
        for _ in range(count):
            delta = {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": f"{time.monotonic_ns()} "},
            }
            await send(
                {
                    "type": "http.response.body",
                    "body": frame("content_block_delta", delta),
                    "more_body": True,
                }
            )
            if delay:
                await asyncio.sleep(delay)
        tail = (
            frame("content_block_stop", {"type": "content_block_stop", "index": 0})
            + frame(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": count},
                },
            )
            + frame("message_stop", {"type": "message_stop"})
        )
        await send({"type": "http.response.body", "body": tail, "more_body": False})

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--deltas", type=int, default=2000)
    parser.add_argument(
        "--delay", type=float, default=0.0, help="seconds between deltas (0: as fast as possible)"
    )
    args = parser.parse_args()
    uvicorn.run(
        make_app(args.deltas, args.delay),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
