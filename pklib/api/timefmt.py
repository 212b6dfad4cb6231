"""The API's timestamps: RFC 3339 in UTC with a `Z`; seconds for metav1.Time, microseconds for MicroTime."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone


def now() -> datetime:
    return datetime.now(timezone.utc)


def format_time(t: datetime) -> str:
    """metav1.Time: `2026-11-22T02:37:34Z`."""
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_rfc3339(offset_seconds: float = 0) -> str:
    return format_time(now() + timedelta(seconds=offset_seconds))


def format_micro_time(t: datetime) -> str:
    """metav1.MicroTime (Leases, Events): `2026-11-22T02:37:34.888597Z`."""
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def micro_now() -> str:
    return format_micro_time(now())


def parse_time(value: str | None) -> datetime | None:
    """A timestamp as the API writes it (with or without fractions); None when missing or malformed."""
    if not value:
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)
