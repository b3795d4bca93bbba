"""``ToolOutputStream``: pacing and bounds of live tool output."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from backend.sessions.tool_output import ToolOutputStream


async def test_a_burst_is_coalesced_and_nothing_is_lost_or_reordered() -> None:
    sent: list[dict[str, Any]] = []

    async def emit(kind: str, data: dict[str, Any]) -> None:
        sent.append(data)

    stream = ToolOutputStream(emit, message_id="m", tool_id="t", rate=20, max_bytes=1 << 20)
    for i in range(200):
        await stream.add("stdout", f"{i}\n")
    await stream.add("stderr", "warn\n")
    await stream.close()
    # The first write goes out at once, the rest within one more flush.
    assert sent[0]["text"] == "0\n"
    assert len(sent) <= 3
    out = "".join(d["text"] for d in sent if d["stream"] == "stdout")
    assert out == "".join(f"{i}\n" for i in range(200))
    assert [d["stream"] for d in sent][-1] == "stderr"


async def test_writes_spread_over_time_are_paced_to_the_rate() -> None:
    times: list[float] = []
    loop = asyncio.get_running_loop()

    async def emit(kind: str, data: dict[str, Any]) -> None:
        times.append(loop.time())

    stream = ToolOutputStream(emit, message_id="m", tool_id="t", rate=10, max_bytes=1 << 20)
    start = loop.time()
    while loop.time() - start < 0.5:
        await stream.add("stdout", "x")
        await asyncio.sleep(0.005)
    await stream.close()
    gaps = [b - a for a, b in itertools.pairwise(times[:-1])]
    # At most one event per 0.1 s (the closing flush may come sooner).
    assert all(gap >= 0.09 for gap in gaps), gaps


async def test_output_stops_at_the_byte_bound_and_says_so() -> None:
    sent: list[dict[str, Any]] = []

    async def emit(kind: str, data: dict[str, Any]) -> None:
        sent.append(data)

    stream = ToolOutputStream(emit, message_id="m", tool_id="t", rate=1000, max_bytes=100)
    for _ in range(50):
        await stream.add("stdout", "0123456789")
        await asyncio.sleep(0.002)
    await stream.close()
    assert sum(len(d["text"]) for d in sent) == 100
    assert sent[-1]["truncated"] is True
    assert all("truncated" not in d for d in sent[:-1])
