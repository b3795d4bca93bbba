"""Small text formatters for the UI: relative times and compact counts."""

from __future__ import annotations

from datetime import UTC, datetime


def parse_time(stamp: str | None) -> datetime | None:
    """Parse the contract's ISO 8601 UTC timestamps (``...Z``); None when absent or malformed."""
    if not stamp:
        return None
    try:
        parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def ago(stamp: str | None, now: datetime | None = None) -> str:
    """``"just now"``, ``"5m ago"``, ``"3h ago"``, ``"2d ago"`` or a date, for a timestamp."""
    when = parse_time(stamp)
    if when is None:
        return "never"
    seconds = ((now or datetime.now(UTC)) - when).total_seconds()
    if seconds < 45:
        return "just now"
    if seconds < 3600:
        return f"{round(seconds / 60) or 1}m ago"
    if seconds < 86400:
        return f"{round(seconds / 3600)}h ago"
    if seconds < 86400 * 14:
        return f"{round(seconds / 86400)}d ago"
    return when.strftime("%Y-%m-%d")


def short_date(stamp: str | None) -> str:
    """``"2026-11-25 09:14"`` in UTC, or an em dash when absent."""
    when = parse_time(stamp)
    return when.strftime("%Y-%m-%d %H:%M") if when else "—"


def compact_count(value: int | float) -> str:
    """``950``, ``12.3k``, ``4.1M``: short enough for the status line."""
    value = float(value)
    if abs(value) < 1000:
        return str(int(value))
    if abs(value) < 1_000_000:
        return f"{value / 1000:.1f}k"
    return f"{value / 1_000_000:.1f}M"
