"""Issue 9's figures, against a real ``agent-tui serve`` and the fake model:

1. a 300-turn session whose every turn runs a command with a large output: turns that
   fail (target 0: never on the context window), compactions, and the largest
   request sent to the model (target: under COMPACTION_THRESHOLD x the window);
2. ``tool.output`` latency from the command's write to the client reading the event
   (a command prints its own clock every 10 ms): p50 / p99 (target p99 <= 100 ms).

    python -m bench.bench_agent_features [--quick]
"""

from __future__ import annotations

import argparse
import json
import time

import httpx

from bench.common import median, percentile, serve, table
from tests.fakes.fake_anthropic import FakeAnthropic

WINDOW = 20_000
THRESHOLD = 0.75
BIG_OUTPUT = "yes 'a line of build output, long enough to count' | head -c 24000"
STAMPS = "for i in $(seq {n}); do date +%s.%N; sleep 0.01; done"


def _turn(client: httpx.Client, url: str, session: str, text: str) -> list[dict]:
    """Send a message and read its events to ``session.idle``; each event gets the
    time it was read as ``_at``."""
    events: list[dict] = []
    with client.stream(
        "POST", f"{url}/v1/sessions/{session}/messages", json={"content": text}, timeout=300
    ) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            event = json.loads(line[6:])
            event["_at"] = time.time()
            events.append(event)
            if event["type"] == "session.idle":
                break
    return events


def _session(client: httpx.Client, url: str) -> str:
    session = client.post(f"{url}/v1/sessions", json={"title": "bench"}).json()["id"]
    deadline = time.monotonic() + 60
    while client.get(f"{url}/v1/sessions/{session}").json()["status"] != "idle":
        if time.monotonic() > deadline:
            raise RuntimeError("the session did not start")
        time.sleep(0.1)
    return session


def long_session(fake: FakeAnthropic, url: str, key: str, turns: int) -> list[list[object]]:
    headers = {"Authorization": f"Bearer {key}"}
    failed = compactions = 0
    largest: list[int] = []
    with httpx.Client(headers=headers, timeout=60) as client:
        session = _session(client, url)
        for i in range(turns):
            before = len(fake.requests)
            events = _turn(client, url, session, f"run: {BIG_OUTPUT} # turn {i}")
            failed += any(e["type"] == "error" for e in events)
            compactions += sum(e["type"] == "context.compacted" for e in events)
            sizes = [
                len(json.dumps(r.body)) // 4
                for r in fake.requests[before:]
                if r.path == "/v1/messages" and r.body.get("stream")
            ]
            largest.append(max(sizes, default=0))
        messages = client.get(f"{url}/v1/sessions/{session}/messages").json()["messages"]
    limit = int(WINDOW * THRESHOLD)
    return [
        ["turns", turns],
        ["turns failed", failed],
        ["compactions", compactions],
        ["transcript messages kept", len(messages)],
        ["largest request (tokens, est.)", max(largest)],
        ["median request (tokens, est.)", int(median([float(x) for x in largest]))],
        ["threshold (tokens)", limit],
        ["every request under it", all(x <= limit for x in largest)],
    ]


def output_latency(url: str, key: str, lines: int, runs: int) -> list[list[object]]:
    headers = {"Authorization": f"Bearer {key}"}
    latencies: list[float] = []
    with httpx.Client(headers=headers, timeout=60) as client:
        session = _session(client, url)
        for _ in range(runs):
            events = _turn(client, url, session, f"run: {STAMPS.format(n=lines)}")
            for event in events:
                if event["type"] != "tool.output":
                    continue
                for line in event["data"]["text"].splitlines():
                    try:
                        latencies.append((event["_at"] - float(line)) * 1000)
                    except ValueError:
                        pass
    return [
        ["lines timed", len(latencies)],
        ["p50 (ms)", f"{percentile(latencies, 50):.1f}"],
        ["p99 (ms)", f"{percentile(latencies, 99):.1f}"],
        ["max (ms)", f"{max(latencies):.1f}"],
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="30 turns, fewer timed lines")
    args = parser.parse_args()
    turns = 30 if args.quick else 300
    with FakeAnthropic() as fake:
        env = {
            "ANTHROPIC_BASE_URL": fake.url,
            "CONTEXT_WINDOW_TOKENS": str(WINDOW),
            "COMPACTION_THRESHOLD": str(THRESHOLD),
            # 300 turns in a few minutes: above the per-user defaults.
            "RATE_LIMIT_SEND_MESSAGE": "100000/60",
            "RATE_LIMIT_DEFAULT": "100000/60",
        }
        with serve(env) as server:
            rows = long_session(fake, server.url, server.key, turns)
            print(
                table(f"A {turns}-turn session, ~6k tokens of tool output per turn", ["", ""], rows)
            )
            print()
            rows = output_latency(
                server.url, server.key, 50 if args.quick else 200, 2 if args.quick else 5
            )
            print(table("tool.output latency: command write -> client read", ["", ""], rows))


if __name__ == "__main__":
    main()
