"""The API's timestamps: RFC 3339 in UTC with a `Z`; seconds for metav1.Time, microseconds for MicroTime."""
from __future__ import annotations

import re
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


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in a Go duration (`0s`, `90s`, `1m30s`, `1.5h`, `500ms`), the format of kubectl's --timeout
    and of Kubernetes components' duration flags.

    Raises ValueError worded like Go's time.ParseDuration.
    """
    body = text[1:] if text[:1] in "+-" else text
    if body == "0":
        return 0.0
    if not body:
        raise ValueError(f'time: invalid duration "{text}"')
    total, at = 0.0, 0
    while at < len(body):
        m = _DURATION_PART.match(body, at)
        if m is None:
            if re.fullmatch(r"\d+(?:\.\d*)?", body[at:]):
                raise ValueError(f'time: missing unit in duration "{text}"')
            raise ValueError(f'time: invalid duration "{text}"')
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        at = m.end()
    return -total if text.startswith("-") else total
