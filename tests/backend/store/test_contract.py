"""The ``Store`` contract: every test runs against SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone

import pytest

from backend.errors import StoreUnavailable
from backend.records import (
    ACTIVE_STATUSES,
    SESSION_STATUSES,
    ToolCall,
    new_id,
)
from backend.store.base import SessionCursor, Store
from tests.backend.store.factories import (
    at,
    make_event,
    make_key,
    make_message,
    make_session,
    make_usage,
)

# lifecycle


async def test_migrate_again_applies_nothing_and_ping_answers(store: Store) -> None:
    assert isinstance(store, Store)
    assert await store.migrate() == []
    await store.ping()


async def test_calls_after_close_raise_store_unavailable(store: Store) -> None:
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(StoreUnavailable):
        await store.ping()
    with pytest.raises(StoreUnavailable):
        await store.get_session(new_id())


# API keys


async def test_key_round_trip_by_hash_and_id(store: Store) -> None:
    key = make_key(
        scopes=["admin", "sessions"],
        environment="test",
        expires_at=at(3600),
        last_used_at=at(-60),
    )
    await store.create_key(key)
    assert await store.get_key_by_hash(key.key_hash) == key
    assert await store.get_key(key.id) == key
    assert await store.get_key_by_hash("0" * 64) is None
    assert await store.get_key(new_id()) is None
    assert await store.get_key("not-a-uuid") is None
    bare = make_key(scopes=[])
    await store.create_key(bare)
    assert await store.get_key(bare.id) == bare
    with pytest.raises(ValueError):
        await store.create_key(make_key(key_hash=key.key_hash))


async def test_list_keys_newest_first_including_revoked(store: Store) -> None:
    old, new, revoked = (
        make_key(created_at=at(0)),
        make_key(created_at=at(20)),
        make_key(created_at=at(10), revoked_at=at(15)),
    )
    for key in (old, new, revoked, make_key(user_id="someone-else")):
        await store.create_key(key)
    assert [k.id for k in await store.list_keys("user-1")] == [new.id, revoked.id, old.id]
    assert await store.list_keys("nobody") == []


async def test_revoke_key_is_idempotent(store: Store) -> None:
    key = make_key()
    await store.create_key(key)
    await store.revoke_key(key.id, at(100))
    await store.revoke_key(key.id, at(200))  # keeps the first revocation time
    got = await store.get_key(key.id)
    assert got is not None and got.revoked_at == at(100)
    assert not got.usable_at(at(150))
    await store.revoke_key(new_id(), at(0))  # unknown: no error
    await store.revoke_key("not-a-uuid", at(0))


async def test_touch_key_sets_last_used_and_never_goes_back(store: Store) -> None:
    key = make_key()
    await store.create_key(key)
    await store.touch_key(key.id, at(60))
    await store.touch_key(key.id, at(30))
    got = await store.get_key(key.id)
    assert got is not None and got.last_used_at == at(60)


# sessions


async def test_session_round_trip_with_every_field(store: Store) -> None:
    key = make_key()
    await store.create_key(key)
    session = make_session(
        api_key_id=key.id,
        status="error",
        title="Fix the build ✓ — ünïcødé 🚀",
        repo="owner/repo",
        system_prompt="Be terse.\nVery.",
        sandbox_provider="modal",
        sandbox_id="sb-123",
        sandbox_state="ready",
        snapshot_id="im-456",
        last_seq=42,
        input_tokens=1_234_567_890_123,
        output_tokens=7,
        cache_read_tokens=3,
        sandbox_seconds=12.5,
        message_count=4,
        error={"code": "SANDBOX_ERROR", "message": "lost 💥", "details": {"n": [1, 2.5, None]}},
    )
    await store.create_session(session)
    assert await store.get_session(session.id) == session


async def test_session_defaults_round_trip_and_duplicate(store: Store) -> None:
    session = make_session()
    await store.create_session(session)
    assert await store.get_session(session.id) == session
    with pytest.raises(ValueError):
        await store.create_session(session)


async def test_session_ids_are_canonical_uuids(store: Store) -> None:
    assert await store.get_session(new_id()) is None
    assert await store.get_session("../../etc/passwd") is None
    with pytest.raises(ValueError):
        await store.create_session(make_session(id="session-1"))
    session = make_session()
    session.id = session.id.upper()
    await store.create_session(session)
    got = await store.get_session(session.id)  # found by either spelling
    assert got is not None and got.id == session.id.lower()
    assert await store.get_session(session.id.lower()) == got


async def test_list_sessions_newest_first_ties_by_id_desc(store: Store) -> None:
    sessions = [make_session(created_at=at(i // 2)) for i in range(6)]  # pairs share a time
    for session in sessions:
        await store.create_session(session)
    await store.create_session(make_session(user_id="someone-else", created_at=at(99)))
    expected = sorted(sessions, key=lambda s: (s.created_at, s.id), reverse=True)
    assert [s.id for s in await store.list_sessions("user-1")] == [s.id for s in expected]
    assert [s.id for s in await store.list_sessions("user-1", limit=2)] == [
        s.id for s in expected[:2]
    ]
    assert await store.list_sessions("user-1", limit=0) == []
    with pytest.raises(ValueError):
        await store.list_sessions("user-1", limit=-1)


async def test_list_sessions_cursor_pages_cover_everything_once(store: Store) -> None:
    # Ties on created_at straddle page boundaries: only (created_at, id) keeps order.
    sessions = [make_session(created_at=at(i // 3)) for i in range(10)]
    await asyncio.gather(*(store.create_session(s) for s in sessions))
    expected = [s.id for s in sorted(sessions, key=lambda s: (s.created_at, s.id), reverse=True)]
    seen: list[str] = []
    cursor: SessionCursor | None = None
    while True:
        page = await store.list_sessions("user-1", limit=3, after=cursor)
        if not page:
            break
        seen += [s.id for s in page]
        cursor = SessionCursor(page[-1].created_at, page[-1].id)
    assert seen == expected


async def test_list_sessions_status_filter_with_cursor(store: Store) -> None:
    running = [make_session(status="running", created_at=at(i)) for i in range(4)]
    for session in [*running, make_session(status="idle", created_at=at(10))]:
        await store.create_session(session)
    first = await store.list_sessions("user-1", status="running", limit=2)
    assert [s.id for s in first] == [running[3].id, running[2].id]
    rest = await store.list_sessions(
        "user-1", status="running", after=SessionCursor(first[-1].created_at, first[-1].id)
    )
    assert [s.id for s in rest] == [running[1].id, running[0].id]
    assert await store.list_sessions("user-1", status="paused") == []


async def test_list_sessions_by_status_spans_users(store: Store) -> None:
    a = make_session(user_id="a", status="running", created_at=at(1))
    b = make_session(user_id="b", status="starting", created_at=at(2))
    c = make_session(user_id="c", status="paused", created_at=at(3))
    for session in (a, b, c):
        await store.create_session(session)
    found = await store.list_sessions_by_status(["running", "starting"])
    assert [s.id for s in found] == [a.id, b.id]
    assert await store.list_sessions_by_status([]) == []


async def test_count_active_sessions(store: Store) -> None:
    for status in SESSION_STATUSES:
        await store.create_session(make_session(status=status))
    await store.create_session(make_session(user_id="someone-else", status="idle"))
    assert await store.count_active_sessions("user-1") == len(ACTIVE_STATUSES)
    assert await store.count_active_sessions("nobody") == 0


async def test_update_session_changes_only_the_given_fields(store: Store) -> None:
    session = make_session()
    await store.create_session(session)
    changes = {
        "status": "running",
        "title": "renamed ✓",
        "last_activity_at": at(500),
        "last_seq": 17,
        "input_tokens": 100,
        "sandbox_seconds": 3.25,
        "error": {"code": "X", "message": "y"},
    }
    await store.update_session(session.id, changes)
    got = await store.get_session(session.id)
    assert got is not None
    for name, value in changes.items():
        setattr(session, name, value)
    assert got == session
    await store.update_session(session.id, {"error": None, "title": None})
    got = await store.get_session(session.id)
    assert got is not None and got.error is None and got.title is None
    await store.update_session(session.id, {})  # no-op
    await store.update_session(new_id(), {"status": "idle"})  # unknown: no-op


async def test_update_session_rejects_fields_outside_the_whitelist(store: Store) -> None:
    session = make_session()
    await store.create_session(session)
    for changes in (
        {"user_id": "other"},
        {"id": new_id()},
        {"status = 'x' --": 1},
        {"status": "running", "nope": 1},  # nothing is applied, not even status
    ):
        with pytest.raises(ValueError):
            await store.update_session(session.id, changes)
    assert await store.get_session(session.id) == session


# messages


async def test_message_round_trip_with_json_and_unicode(store: Store) -> None:
    session = make_session()
    await store.create_session(session)
    message = make_message(
        session.id,
        role="assistant",
        content="Voilà: 日本語, emoji 🧪, quotes \"'`, backslash \\ and a literal \\u0000",
        tool_calls=[
            ToolCall("t1", "shell", {"cmd": "ls -la", "env": {"LANG": "ç"}}, "total 0", False),
            ToolCall("t2", "read_file", {"path": "a/b.txt"}, None, True),
        ],
        stop_reason="end_turn",
        usage={"inputTokens": 10, "outputTokens": 20, "cacheReadTokens": 0},
        model_messages=[
            {"role": "assistant", "content": [{"type": "text", "text": "héllo"}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1"}]},
        ],
    )
    await store.add_message(message)
    assert await store.list_messages(session.id) == [message]


async def test_nul_characters_are_replaced(store: Store) -> None:
    session = make_session()
    await store.create_session(session)
    message = make_message(
        session.id, content="a\x00b", tool_calls=[ToolCall("t", "shell", {}, "out\x00put")]
    )
    await store.add_message(message)
    [got] = await store.list_messages(session.id)
    assert got.content == "a\ufffdb"
    assert got.tool_calls[0].result == "out\ufffdput"


async def test_messages_with_equal_times_keep_insertion_order(store: Store) -> None:
    session = make_session()
    await store.create_session(session)
    same_time = at(0)
    messages = [make_message(session.id, created_at=same_time, content=str(i)) for i in range(5)]
    messages.insert(0, make_message(session.id, created_at=at(-1), content="first"))
    messages.append(make_message(session.id, created_at=at(1), content="last"))
    other = make_session()
    await store.create_session(other)
    for message in messages:
        await store.add_message(message)
        await store.add_message(make_message(other.id, created_at=same_time))
    assert [m.content for m in await store.list_messages(session.id)] == [
        m.content for m in messages
    ]


async def test_list_messages_limit_gives_the_newest_oldest_first(store: Store) -> None:
    session = make_session()
    await store.create_session(session)
    messages = [make_message(session.id, created_at=at(i // 2), content=str(i)) for i in range(7)]
    for message in messages:
        await store.add_message(message)
    assert [m.content for m in await store.list_messages(session.id, limit=3)] == ["4", "5", "6"]
    assert await store.list_messages(session.id, limit=0) == []


async def test_list_messages_before_pages_back_through_ties(store: Store) -> None:
    session = make_session()
    await store.create_session(session)
    messages = [make_message(session.id, created_at=at(i // 3), content=str(i)) for i in range(8)]
    for message in messages:
        await store.add_message(message)
    pages: list[list[str]] = []
    before: str | None = None
    while True:
        page = await store.list_messages(session.id, limit=3, before=before)
        if not page:
            break
        pages.append([m.content for m in page])
        before = page[0].id
    assert pages == [["5", "6", "7"], ["2", "3", "4"], ["0", "1"]]
    middle = messages[4]
    assert [m.content for m in await store.list_messages(session.id, before=middle.id)] == [
        "0",
        "1",
        "2",
        "3",
    ]


async def test_list_messages_with_unknown_ids(store: Store) -> None:
    session = make_session()
    await store.create_session(session)
    await store.add_message(make_message(session.id))
    assert await store.list_messages(session.id, before=new_id()) == []
    assert await store.list_messages(session.id, before="garbage") == []
    assert await store.list_messages(new_id()) == []
    assert await store.list_messages("garbage") == []
    # A message of another session is no position in this one.
    other = make_session()
    await store.create_session(other)
    later = make_message(other.id, created_at=at(3600))
    await store.add_message(later)
    assert await store.list_messages(session.id, before=later.id) == []


async def test_messages_and_events_need_an_existing_session(store: Store) -> None:
    with pytest.raises(ValueError):
        await store.add_message(make_message(new_id()))
    with pytest.raises(ValueError):
        await store.append_events([make_event(new_id(), 1)])


async def test_update_message(store: Store) -> None:
    session = make_session()
    await store.create_session(session)
    message = make_message(session.id, role="assistant", content="")
    await store.add_message(message)
    call = ToolCall("t1", "shell", {"cmd": "echo ✓"})
    await store.update_message(
        message.id,
        {
            "content": "done ✓",
            "tool_calls": [call, {"id": "t2", "name": "x", "arguments": {}, "isError": True}],
            "stop_reason": "end_turn",
            "usage": {"inputTokens": 1},
            "model_messages": [{"role": "assistant", "content": "done ✓"}],
        },
    )
    [got] = await store.list_messages(session.id)
    assert got.content == "done ✓"
    assert got.tool_calls == [call, ToolCall("t2", "x", {}, None, True)]
    assert got.stop_reason == "end_turn"
    assert got.usage == {"inputTokens": 1}
    assert got.model_messages == [{"role": "assistant", "content": "done ✓"}]
    await store.update_message(message.id, {"usage": None, "tool_calls": []})
    [got] = await store.list_messages(session.id)
    assert got.usage is None and got.tool_calls == []
    with pytest.raises(ValueError):
        await store.update_message(message.id, {"session_id": new_id()})
    await store.update_message(new_id(), {"content": "x"})  # unknown: no-op


# events


async def test_append_and_list_events(store: Store) -> None:
    session = make_session()
    await store.create_session(session)
    events = [
        make_event(session.id, seq, data={"n": seq, "text": "ünï 🚀", "nested": {"a": [1, None]}})
        for seq in range(1, 8)
    ]
    await store.append_events(events[:1])
    await store.append_events(events[1:])
    await store.append_events([])
    assert await store.list_events(session.id, after_seq=0) == events
    assert [e.seq for e in await store.list_events(session.id, after_seq=3, limit=2)] == [4, 5]
    assert await store.list_events(session.id, after_seq=7) == []
    assert await store.list_events(new_id(), after_seq=0) == []
    assert await store.list_events("garbage", after_seq=0) == []
    other = make_session()
    await store.create_session(other)
    await store.append_events([make_event(other.id, 1), make_event(other.id, 2)])
    assert await store.list_events(session.id, after_seq=0) == events
    assert [(e.session_id, e.seq) for e in await store.list_events(other.id, after_seq=0)] == [
        (other.id, 1),
        (other.id, 2),
    ]


async def test_duplicate_event_seq_is_a_value_error_and_stores_nothing(store: Store) -> None:
    session = make_session()
    await store.create_session(session)
    await store.append_events([make_event(session.id, 1)])
    with pytest.raises(ValueError):
        await store.append_events([make_event(session.id, 1)])
    with pytest.raises(ValueError):
        # All or nothing: seq 2 must not be stored either.
        await store.append_events([make_event(session.id, 2), make_event(session.id, 1)])
    assert [e.seq for e in await store.list_events(session.id, after_seq=0)] == [1]
    await store.append_events([make_event(session.id, 2)])  # the store still works


# usage


async def test_usage_summary_by_type_and_day(store: Store) -> None:
    day1 = datetime(2026, 11, 24, 23, 59, 59, 999_000, tzinfo=UTC)
    day2 = datetime(2026, 11, 25, 0, 0, 0, tzinfo=UTC)
    session_id = new_id()
    await store.add_usage(
        [
            make_usage(event_type="tokens.input", quantity=100, created_at=day1),
            make_usage(event_type="tokens.output", quantity=7, created_at=day1),
            make_usage(
                event_type="tokens.input", quantity=50, created_at=day2, session_id=session_id
            ),
            make_usage(event_type="sandbox.seconds", quantity=1.5, created_at=day2),
            make_usage(event_type="sandbox.seconds", quantity=2.25, created_at=day2),
            make_usage(user_id="someone-else", quantity=1000, created_at=day2),
        ]
    )
    summary = await store.usage_summary("user-1")
    assert summary.by_type == {"tokens.input": 150.0, "tokens.output": 7.0, "sandbox.seconds": 3.75}
    assert summary.by_day == [
        {"date": "2026-11-24", "eventType": "tokens.input", "quantity": 100.0},
        {"date": "2026-11-24", "eventType": "tokens.output", "quantity": 7.0},
        {"date": "2026-11-25", "eventType": "sandbox.seconds", "quantity": 3.75},
        {"date": "2026-11-25", "eventType": "tokens.input", "quantity": 50.0},
    ]
    only_session = await store.usage_summary("user-1", session_id=session_id)
    assert only_session.by_type == {"tokens.input": 50.0}
    empty = await store.usage_summary("nobody")
    assert empty.by_type == {} and empty.by_day == []
    assert (await store.usage_summary("user-1", session_id="garbage")).by_day == []
    # Days are UTC days: 01:30 on the 26th in UTC+05:30 is 20:00 on the 25th in UTC.
    ist = timezone(timedelta(hours=5, minutes=30))
    await store.add_usage(
        [make_usage(user_id="u2", created_at=datetime(2026, 11, 26, 1, 30, tzinfo=ist))]
    )
    assert [d["date"] for d in (await store.usage_summary("u2")).by_day] == ["2026-11-25"]


async def test_usage_window_is_start_inclusive_end_exclusive(store: Store) -> None:
    await store.add_usage([make_usage(quantity=2**i, created_at=at(i)) for i in range(5)])
    summary = await store.usage_summary("user-1", start=at(1), end=at(3))
    assert summary.by_type == {"tokens.input": 2.0 + 4.0}
    assert (await store.usage_summary("user-1", start=at(3))).by_type == {"tokens.input": 24.0}
    assert (await store.usage_summary("user-1", end=at(1))).by_type == {"tokens.input": 1.0}
    # The same instants written in another zone select the same rows.
    tz = timezone(timedelta(hours=-7))
    shifted = await store.usage_summary(
        "user-1", start=at(1).astimezone(tz), end=at(3).astimezone(tz)
    )
    assert shifted.by_type == summary.by_type


# times


async def test_times_come_back_as_the_same_instant_in_utc_at_ms(store: Store) -> None:
    tz = timezone(timedelta(hours=5, minutes=30))
    created = datetime(2026, 11, 25, 9, 0, 0, 123_456, tzinfo=tz)
    session = make_session(created_at=created, last_activity_at=datetime(2026, 1, 1, 0, 0))
    await store.create_session(session)
    got = await store.get_session(session.id)
    assert got is not None
    assert got.created_at == created.replace(microsecond=123_000)
    assert got.created_at.utcoffset() == timedelta(0)
    assert got.created_at.tzinfo is not None
    # A naive time is taken as UTC.
    assert got.last_activity_at == datetime(2026, 1, 1, tzinfo=UTC)


# concurrency


async def test_concurrent_writes_all_land(store: Store) -> None:
    session = make_session()
    await store.create_session(session)
    await asyncio.gather(
        *(store.add_message(make_message(session.id)) for _ in range(20)),
        *(store.append_events([make_event(session.id, seq)]) for seq in range(1, 21)),
        *(store.update_session(session.id, {"last_seq": n}) for n in range(20)),
        *(store.add_usage([make_usage()]) for _ in range(10)),
    )
    assert len(await store.list_messages(session.id)) == 20
    assert len(await store.list_events(session.id, after_seq=0)) == 20
    assert (await store.usage_summary("user-1")).by_type == {"tokens.input": 10.0}
