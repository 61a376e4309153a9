"""Timezone-aware UTC time, stamped by the application."""

from __future__ import annotations

from datetime import datetime, timezone


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def parse_rfc3339(text: object) -> datetime:
    """Parse an RFC 3339 timestamp with an explicit offset (``Z`` or ``±hh:mm``) into UTC.

    Raises ValueError for anything else, including a time whose UTC equivalent falls outside
    years 1 to 9999 (``9999-12-31T23:59:59-01:00``), which ``datetime`` cannot hold.
    """
    if not isinstance(text, str) or "T" not in text.upper():
        raise ValueError(f"not an RFC 3339 timestamp: {text[:64]!r}" if isinstance(text, str) else
                         f"not an RFC 3339 timestamp: a {type(text).__name__}")
    value = datetime.fromisoformat(text.replace("z", "Z"))
    if value.tzinfo is None:
        raise ValueError(f"RFC 3339 timestamp without a UTC offset: {text[:64]!r}")
    try:
        return value.astimezone(timezone.utc)
    except OverflowError:
        raise ValueError(f"RFC 3339 timestamp outside the years 1 to 9999 in UTC: {text[:64]!r}") from None


def isoformat(value: datetime | None) -> str | None:
    """RFC 3339 in UTC with a ``Z`` suffix, or None."""
    if value is None:
        return None
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
