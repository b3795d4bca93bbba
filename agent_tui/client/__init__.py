"""The async Python client of the Agent API, shared by the TUI and third-party code.

    async with AgentClient("http://127.0.0.1:8787", "aa_live_...") as client:
        session = await client.create_session(title="demo")
        await session.wait_until_ready()
        await session.send_message("hello", on_event=print)
        print(await session.list_files("/"))
        await session.delete()

Events and wire models are the backend's own (``backend.events.Event``,
``backend.schemas``), never a second copy.
"""

from agent_tui.client.client import AgentClient, RateLimitInfo
from agent_tui.client.errors import CONNECTION_ERROR, AgentApiError
from agent_tui.client.session import SessionHandle
from agent_tui.client.streams import ConnectionState
from backend.events import Event

__all__ = [
    "CONNECTION_ERROR",
    "AgentApiError",
    "AgentClient",
    "ConnectionState",
    "Event",
    "RateLimitInfo",
    "SessionHandle",
]
