"""Issue 9's store additions, on SQLite and PostgreSQL alike: session options and
permission requests."""

from __future__ import annotations

from datetime import timedelta

from backend.records import PermissionRequest, new_id, utcnow
from backend.store.base import Store
from tests.backend.store.factories import make_message, make_session


async def test_session_options_round_trip(store: Store) -> None:
    session = make_session(options={"thinking": True})
    await store.create_session(session)
    got = await store.get_session(session.id)
    assert got is not None and got.options == {"thinking": True}
    await store.update_session(
        session.id, {"options": {"permissionMode": "ask", "allowedTools": ["shell"]}}
    )
    got = await store.get_session(session.id)
    assert got is not None and got.options == {"permissionMode": "ask", "allowedTools": ["shell"]}
    plain = make_session()
    await store.create_session(plain)
    assert (await store.get_session(plain.id)).options == {}  # type: ignore[union-attr]


async def test_permission_requests_first_answer_wins(store: Store) -> None:
    session = make_session(user_id="ann")
    await store.create_session(session)
    message = make_message(session.id, role="assistant")
    await store.add_message(message)
    now = utcnow()
    request = PermissionRequest(
        id=new_id(),
        session_id=session.id,
        message_id=message.id,
        tool_use_id="toolu_1",
        tool="shell",
        input={"command": "rm -rf build"},
        created_at=now,
    )
    await store.add_permission_request(request)
    assert await store.get_permission_request(request.id) == request
    assert await store.list_permission_requests(session.id, pending_only=True) == [request]
    assert await store.pending_permission_counts("ann") == {session.id: 1}
    assert await store.pending_permission_counts("bob") == {}
    later = now + timedelta(seconds=1)
    decided = await store.decide_permission_request(request.id, "deny", later)
    assert decided is not None and (decided.decision, decided.decided_at) == ("deny", later)
    again = await store.decide_permission_request(request.id, "allow", later + timedelta(seconds=1))
    assert again is not None and again.decision == "deny"  # the first answer stands
    assert await store.list_permission_requests(session.id, pending_only=True) == []
    assert len(await store.list_permission_requests(session.id)) == 1
    assert await store.pending_permission_counts("ann") == {}
    assert await store.get_permission_request(new_id()) is None
    assert await store.get_permission_request("not-a-uuid") is None
