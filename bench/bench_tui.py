"""The TUI's figures: first screen, a 2,000-delta stream, key-press latency while it streams.

1. Launch, embedded mode: a fresh interpreter runs the real app (``AgentApp``
   with the embedded backend) headless, and "hello" + Enter are pressed as soon
   as the main screen is mounted, as a user typing at once would. Times from
   just before the process is spawned to: the first refresh after the main
   screen is mounted (first screen); the backend answering (backend ready); the
   server echoing the message (``message.user``: the first message accepted,
   "ready" in issue 10's sense); the first token of the reply (the model, a fake
   in its own process, answers at once: the time is the app's, mostly the lazy
   anthropic SDK import). Median of ``--launch-runs`` (5). With tmux installed,
   the first screen is also measured from the outside: ``agent-tui`` in a real
   terminal until "Sessions" appears on the pane.
2. 2,000 markdown deltas (after one warm-up turn): the fake Anthropic model
   streams them as fast as it can (from a separate process, as a remote model
   would) through the real embedded backend and its SSE stream; the time is from
   sending the prompt until the chat's markdown holds the whole text (and from
   the first delta's arrival to that moment).
3. Key-press latency while that stream renders: a key event every 25 ms is
   posted to the app the way the terminal driver posts it; latency is until the
   prompt handles it, and until the next screen refresh after that.

    python -m bench.bench_tui [--runs 3] [--launch-runs 5] [--deltas 2000] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TARGET_FIRST_SCREEN_S = 1.0
TARGET_READY_S = 1.0  # launch -> first message accepted
TARGET_STREAM_S = 2.0
TARGET_KEY_MS = 100.0
STREAM_DEADLINE_S = 60.0

# An LLM-like answer: paragraphs, a list, a code fence; cut into one-token pieces.
ANSWER_PARAGRAPHS = [
    "## Plan\n\n",
    "I will **read** the file first, then change the `parse` function so it keeps the order of keys. ",
    "After that I run the tests and report what changed.\n\n",
    "- check the input format\n- keep a list of keys\n- write the result back\n\n",
    "```python\ndef parse(text):\n    items = []\n    for line in text.splitlines():\n        items.append(line.split('='))\n    return items\n```\n\n",
    "That keeps the behaviour for every caller, and the new test covers the empty file as well. ",
]


def answer_pieces(count: int) -> list[str]:
    """``count`` small fragments (about one token each) of a markdown answer."""
    text = "".join(ANSWER_PARAGRAPHS)
    words: list[str] = []
    for chunk in text.split(" "):
        words.append(chunk + " ")
    pieces: list[str] = []
    while len(pieces) < count:
        pieces.extend(words)
    return pieces[:count]


def _bwrap_works() -> bool:
    try:
        from sandbox.local import bwrap_available

        return bool(bwrap_available())
    except ImportError:
        return shutil.which("bwrap") is not None


# ---------------------------------------------------------------- 1. first screen


def _child_first_screen(data: str, model_url: str) -> None:
    """In a fresh process: run the app headless, type a message at once, print the marks."""
    from backend.settings import Settings

    settings = Settings(
        data_dir=Path(data) / "data",
        config_dir=Path(data) / "config",
        anthropic_api_key="bench",
        anthropic_base_url=model_url,
        unsafe_local_sandbox=True,
    )
    from agent_tui.app.connection import EmbeddedConnection

    connection = EmbeddedConnection(settings)
    connection.prestart()  # as run_app does: the backend loads while Textual does
    from textual import events

    from agent_tui.app.app import AgentApp
    from agent_tui.app.widgets.chat_view import ChatView
    from agent_tui.app.widgets.prompt import PromptArea
    from agent_tui.client.session import SessionHandle

    marks: dict[str, float] = {}
    cpu: dict[str, float] = {}  # CPU seconds: with two cores, what the figures could be
    original_stream_text = ChatView.stream_text

    original_stream_message = SessionHandle.stream_message

    async def stream_message(self: SessionHandle, content: str) -> AsyncIterator[Any]:
        async for event in original_stream_message(self, content):
            marks.setdefault("message_accepted", time.time())  # the turn's first event
            yield event

    async def stream_text(self: ChatView, *args: Any, **kwargs: Any) -> None:
        marks.setdefault("first_reply", time.time())
        await original_stream_text(self, *args, **kwargs)
        self.app.exit()

    SessionHandle.stream_message = stream_message  # type: ignore[method-assign]
    ChatView.stream_text = stream_text  # type: ignore[method-assign]

    class ProbeApp(AgentApp):
        # Textual runs AgentApp.on_mount (which pushes the main screen) after this one.
        def on_mount(self) -> None:
            self.call_after_refresh(self._first_screen)
            self.set_interval(0.005, self._check_connected)
            self.call_later(self._type_at_once)

        def _first_screen(self) -> None:
            marks.setdefault("first_screen", time.time())
            cpu.setdefault("app_cpu_to_first_screen", time.process_time())

        def _type_at_once(self) -> None:
            # A user who types at once: the keys go to the prompt like the terminal's.
            self.main_screen.query_one(PromptArea).focus()
            for key, character in [*((c, c) for c in "hello"), ("enter", "\r")]:
                self.post_message(events.Key(key, character))

        def _check_connected(self) -> None:
            if self.client is not None and "backend_ready" not in marks:
                marks["backend_ready"] = time.time()
                backend = getattr(self.connection, "backend", None)
                cpu["backend_cpu_to_ready"] = (backend.timings if backend else {}).get("cpu", 0)

    ProbeApp(connection).run(headless=True, size=(120, 40))
    print(json.dumps({"marks": marks, "cpu": cpu}))


def first_screen(runs: int) -> list[dict[str, float]]:
    """Seconds from spawn to each mark, per run (each in a fresh data dir)."""
    results = []
    with _fake_model_process(20) as model_url:
        for _ in range(runs):
            with tempfile.TemporaryDirectory(prefix="agent-tui-bench-") as data:
                began = time.time()
                out = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "bench.bench_tui",
                        "--child-first-screen",
                        data,
                        model_url,
                    ],
                    cwd=ROOT,
                    capture_output=True,
                    text=True,
                    check=True,
                    timeout=120,
                ).stdout
                child = json.loads(out.strip().splitlines()[-1])
                results.append(
                    {name: stamp - began for name, stamp in child["marks"].items()} | child["cpu"]
                )
    return results


def first_screen_tmux(runs: int) -> list[float] | None:
    """Seconds from ``tmux new`` to "Sessions" on a real 120x40 pane, or None without tmux."""
    if shutil.which("tmux") is None:
        return None
    agent_tui = str(Path(sys.executable).parent / "agent-tui")
    results = []
    for i in range(runs):
        with tempfile.TemporaryDirectory(prefix="agent-tui-bench-") as data:
            name = f"agent-tui-bench-{os.getpid()}-{i}"
            env = (
                f"AGENT_TUI_DATA_DIR={data}/data AGENT_TUI_CONFIG_DIR={data}/config "
                "ANTHROPIC_API_KEY=bench AGENT_TUI_UNSAFE_LOCAL_SANDBOX=true"
            )
            began = time.monotonic()
            subprocess.run(
                [
                    "tmux",
                    "new",
                    "-d",
                    "-s",
                    name,
                    "-x",
                    "120",
                    "-y",
                    "40",
                    f"env {env} {agent_tui}",
                ],
                check=True,
            )
            try:
                while time.monotonic() - began < 30:
                    pane = subprocess.run(
                        ["tmux", "capture-pane", "-p", "-t", name], capture_output=True, text=True
                    ).stdout
                    if "Sessions" in pane:
                        results.append(time.monotonic() - began)
                        break
                    time.sleep(0.01)
            finally:
                subprocess.run(["tmux", "send-keys", "-t", name, "C-q"], check=False)
                time.sleep(1.0)
                subprocess.run(
                    ["tmux", "kill-session", "-t", name], capture_output=True, check=False
                )
    return results


# ---------------------------------------------------------------- 2 + 3. stream and keys


def _child_fake_model(port: int, deltas: int) -> None:
    """In a separate process (the model is remote in real life): answer every request
    with the ``deltas``-piece markdown answer, as fast as possible."""
    from tests.fakes.fake_anthropic import FakeAnthropic, reply

    pieces = answer_pieces(deltas)
    text = "".join(pieces)
    fake = FakeAnthropic(
        port=port, default=lambda body: reply().text(text, chunks=pieces).stop("end_turn")
    )
    fake.start()
    print("ready", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        fake.stop()


@contextlib.contextmanager
def _fake_model_process(deltas: int) -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.bench_tui", "--child-fake-model", str(port), str(deltas)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        if child.stdout.readline().strip() != "ready":
            raise RuntimeError("the fake model process did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        child.terminate()
        child.wait(10)


async def stream_and_keys(runs: int, deltas: int) -> list[dict[str, Any]]:
    """Stream ``deltas`` fragments through the embedded backend ``runs`` times; time it and the keys."""
    from textual import events

    from agent_tui.app.app import AgentApp
    from agent_tui.app.connection import EmbeddedConnection
    from agent_tui.app.widgets.assistant_message import AssistantMessage
    from agent_tui.app.widgets.chat_pane import ChatPane
    from agent_tui.app.widgets.chat_view import ChatView
    from agent_tui.app.widgets.prompt import PromptArea
    from backend.settings import Settings
    from tests.agent_tui.fake_client import wait_until

    pieces = answer_pieces(deltas)
    full = "".join(pieces)
    results: list[dict[str, Any]] = []
    posted: list[float] = []
    handled: list[float] = []
    painted: list[float] = []
    first_delta: list[float] = []
    streaming = asyncio.Event()

    original_on_key = PromptArea._on_key
    original_stream_text = ChatView.stream_text

    async def timed_on_key(self: PromptArea, event: events.Key) -> None:
        await original_on_key(self, event)
        if event.key == "x":
            handled.append(time.perf_counter())
            self.call_after_refresh(lambda: painted.append(time.perf_counter()))

    async def timed_stream_text(self: ChatView, fragment: str, **kwargs: Any) -> None:
        if not first_delta:
            first_delta.append(time.perf_counter())
            streaming.set()
        await original_stream_text(self, fragment, **kwargs)

    PromptArea._on_key = timed_on_key  # type: ignore[method-assign]
    ChatView.stream_text = timed_stream_text  # type: ignore[method-assign]

    with (
        _fake_model_process(deltas) as model_url,
        tempfile.TemporaryDirectory(prefix="agent-tui-bench-") as data,
    ):
        settings = Settings(
            data_dir=Path(data) / "data",
            config_dir=Path(data) / "config",
            anthropic_api_key="bench",
            anthropic_base_url=model_url,
            unsafe_local_sandbox=not _bwrap_works(),
        )
        app = AgentApp(EmbeddedConnection(settings))
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_until(pilot, lambda: app.client is not None, 60, "backend")
            pane = app.main_screen.query_one(ChatPane)
            # Run 0 is a warm-up, not recorded: its turn also waits for the backend's
            # first import of the model SDK (the launch figures report that).
            for run in range(runs + 1):
                # A fresh session per run: the same turn each time, not a growing conversation.
                previous_session = pane.session_id
                await pilot.press("ctrl+n")
                await wait_until(
                    pilot,
                    lambda previous_session=previous_session: (
                        pane.session_id not in (None, previous_session)
                        and pane.status == "idle"
                        and not pane.chat.loading
                    ),
                    60,
                    "session",
                )
                posted.clear()
                handled.clear()
                painted.clear()
                first_delta.clear()
                streaming.clear()

                chat = pane.chat
                previous = chat.children[-1] if chat.children else None

                def done(chat: ChatView = chat, previous: Any = previous) -> bool:
                    # O(1): a DOM query here would cost the app time it is being measured on.
                    last = chat.children[-1] if chat.children else None
                    return (
                        last is not previous
                        and isinstance(last, AssistantMessage)
                        and chat.open_text is None
                    )

                began = time.perf_counter()
                pane.submit("stream the answer")
                stop_keys = asyncio.Event()

                async def press_keys(stop_keys: asyncio.Event = stop_keys) -> None:
                    # Keys start once text is streaming: that is when latency matters.
                    await streaming.wait()
                    while not stop_keys.is_set():
                        posted.append(time.perf_counter())
                        app.post_message(events.Key("x", "x"))
                        await asyncio.sleep(0.025)

                presser = asyncio.create_task(press_keys())
                loop = asyncio.get_running_loop()
                deadline = loop.time() + STREAM_DEADLINE_S
                try:
                    while not done():
                        if loop.time() > deadline:
                            raise RuntimeError(
                                f"the stream did not finish within {STREAM_DEADLINE_S} s"
                            )
                        await asyncio.sleep(0.005)
                    ended = time.perf_counter()
                finally:
                    stop_keys.set()
                    streaming.set()
                    await presser
                children = list(chat.children)
                start = children.index(previous) + 1 if previous in children else 0
                shown = "".join(
                    w.source for w in children[start:] if isinstance(w, AssistantMessage)
                )
                if shown != full:
                    import difflib

                    print(len(shown), len(full), [type(w).__name__ for w in children[start:]][:20])
                    for line in list(
                        difflib.unified_diff(full.splitlines(), shown.splitlines(), lineterm="")
                    )[:30]:
                        print(line)
                    raise RuntimeError("the chat does not show the streamed text exactly")
                await wait_until(pilot, lambda: len(handled) >= len(posted), 10, "keys handled")
                await wait_until(pilot, lambda: pane.status == "idle" and not pane.busy, 30, "idle")
                latencies = [(h - p) * 1000 for p, h in zip(posted, handled, strict=False)]
                paint_latencies = [(d - p) * 1000 for p, d in zip(posted, painted, strict=False)]
                app.main_screen.query_one(PromptArea).clear()
                if run == 0:
                    continue
                results.append(
                    {
                        "send_to_full_text_s": ended - began,
                        "first_delta_to_full_text_s": ended - first_delta[0],
                        "keys": len(latencies),
                        "key_p50_ms": statistics.median(latencies) if latencies else float("nan"),
                        "key_max_ms": max(latencies) if latencies else float("nan"),
                        "key_paint_p50_ms": statistics.median(paint_latencies)
                        if paint_latencies
                        else float("nan"),
                        "key_paint_max_ms": max(paint_latencies)
                        if paint_latencies
                        else float("nan"),
                    }
                )
    PromptArea._on_key = original_on_key  # type: ignore[method-assign]
    ChatView.stream_text = original_stream_text  # type: ignore[method-assign]
    return results


# ---------------------------------------------------------------- report


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--launch-runs", type=int, default=5, help="runs of the launch figures")
    parser.add_argument("--quick", action="store_true", help="one run of each measurement")
    parser.add_argument("--deltas", type=int, default=2000)
    parser.add_argument(
        "--child-first-screen", nargs=2, metavar=("DIR", "MODEL_URL"), help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--child-fake-model", nargs=2, type=int, metavar=("PORT", "DELTAS"), help=argparse.SUPPRESS
    )
    args, _unknown = parser.parse_known_args(argv)
    if args.quick:
        args.runs = args.launch_runs = 1
    if args.child_first_screen:
        _child_first_screen(*args.child_first_screen)
        return 0
    if args.child_fake_model:
        _child_fake_model(*args.child_fake_model)
        return 0

    sys.path.insert(0, str(ROOT))
    from bench.common import table

    screens = first_screen(args.launch_runs)
    tmux = first_screen_tmux(args.launch_runs)
    streams = asyncio.run(stream_and_keys(args.runs, args.deltas))

    first = _median([r["first_screen"] for r in screens])
    ready = _median([r["backend_ready"] for r in screens if "backend_ready" in r])
    accepted = _median([r["message_accepted"] for r in screens if "message_accepted" in r])
    replied = _median([r["first_reply"] for r in screens if "first_reply" in r])
    full = _median([r["send_to_full_text_s"] for r in streams])
    key_p50 = _median([r["key_p50_ms"] for r in streams])
    key_max = max(r["key_max_ms"] for r in streams)
    rows: list[list[object]] = [
        [
            "launch → first screen (embedded, headless)",
            f"{first:.3f} s",
            f"≤ {TARGET_FIRST_SCREEN_S} s",
            "ok" if first <= TARGET_FIRST_SCREEN_S else "MISSED",
        ],
        ["launch → embedded backend ready", f"{ready:.3f} s", "", ""],
        [
            "launch → first message accepted (typed at launch)",
            f"{accepted:.3f} s",
            f"≤ {TARGET_READY_S} s",
            "ok" if accepted <= TARGET_READY_S else "MISSED",
        ],
        ["launch → first reply token (SDK loaded lazily)", f"{replied:.3f} s", "", ""],
        [
            "CPU seconds: app → first screen / backend → ready",
            f"{_median([r['app_cpu_to_first_screen'] for r in screens]):.3f} / "
            f"{_median([r['backend_cpu_to_ready'] for r in screens]):.3f} s",
            "(two processes, two cores)",
            "",
        ],
    ]
    if tmux:
        tmux_median = _median(tmux)
        rows.append(
            [
                "launch → first screen (tmux 120x40, real terminal)",
                f"{tmux_median:.3f} s",
                f"≤ {TARGET_FIRST_SCREEN_S} s",
                "ok" if tmux_median <= TARGET_FIRST_SCREEN_S else "MISSED",
            ]
        )
    rows += [
        [
            f"{args.deltas} deltas: send → full text shown",
            f"{full:.3f} s",
            f"≤ {TARGET_STREAM_S} s",
            "ok" if full <= TARGET_STREAM_S else "MISSED",
        ],
        [
            f"{args.deltas} deltas: first delta → full text shown",
            f"{_median([r['first_delta_to_full_text_s'] for r in streams]):.3f} s",
            "",
            "",
        ],
        [
            "key press while streaming → handled (p50 / max)",
            f"{key_p50:.1f} / {key_max:.1f} ms",
            f"< {TARGET_KEY_MS:g} ms",
            "ok"
            if key_max < TARGET_KEY_MS
            else ("p50 ok" if key_p50 < TARGET_KEY_MS else "MISSED"),
        ],
        [
            "key press while streaming → next frame (p50 / max)",
            f"{_median([r['key_paint_p50_ms'] for r in streams]):.1f} / {max(r['key_paint_max_ms'] for r in streams):.1f} ms",
            "",
            "",
        ],
    ]
    print(
        table(
            f"agent-tui TUI, median of {args.runs} runs ({args.launch_runs} for the launch figures)",
            ["figure", "measured", "target", ""],
            rows,
        )
    )
    print(f"keys sampled per run: {[r['keys'] for r in streams]}")
    results_dir = ROOT / "bench" / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "bench_tui.json").write_text(
        json.dumps(
            {"first_screen": screens, "first_screen_tmux": tmux, "stream": streams}, indent=2
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
