"""Value conversions shared by both stores."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from backend.store.codec import (
    canonical_id,
    check_changes,
    clean_text,
    dump_json,
    format_time,
    load_json,
    parse_time,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a\x00b", "a\ufffdb"),
        ("\\u0000", "\\u0000"),  # a backslash and "u0000": text, not a NUL
        ("\\\x00", "\\\ufffd"),  # a backslash, then a real NUL
        ({"k\x00": ["\x00"]}, {"k\ufffd": ["\ufffd"]}),
        ("ünï 🚀", "ünï 🚀"),
    ],
)
def test_json_replaces_real_nuls_only(value: object, expected: object) -> None:
    assert load_json(dump_json(value)) == expected


def test_json_refuses_nan() -> None:
    with pytest.raises(ValueError):
        dump_json({"x": float("nan")})


def test_clean_text() -> None:
    assert clean_text(None) is None
    assert clean_text("ok") == "ok"
    assert clean_text("a\x00") == "a\ufffd"


def test_time_text_is_fixed_width_utc_ms_and_round_trips() -> None:
    plus_two = timezone(timedelta(hours=2))
    value = datetime(987, 1, 2, 3, 4, 5, 678_901, tzinfo=plus_two)
    text = format_time(value)
    assert text == "0987-01-02T01:04:05.678Z"
    assert parse_time(text) == value.replace(microsecond=678_000)
    assert parse_time(text).tzinfo == UTC
    assert format_time(datetime(2026, 1, 1)) == "2026-01-01T00:00:00.000Z"  # naive = UTC


def test_canonical_id() -> None:
    value = uuid.uuid4()
    assert canonical_id(value) == str(value)
    assert canonical_id(str(value).upper()) == str(value)
    assert canonical_id("nope") is None
    assert canonical_id(None) is None


def test_check_changes_is_a_whitelist() -> None:
    allowed = frozenset({"a", "b"})
    assert check_changes({"b": 1, "a": 2}, allowed, "t") == ["a", "b"]
    with pytest.raises(ValueError, match="'c'"):
        check_changes({"a": 1, "c": 2}, allowed, "t")
